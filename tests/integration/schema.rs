//! What the schema itself enforces, written straight in SQL: the rules hold even for a
//! client that bypasses `labeling` and `registry`.

use crate::db::with_db;

async fn refused(pool: &sqlx::PgPool, sql: &str) -> String {
    match sqlx::raw_sql(sql).execute(pool).await {
        Ok(_) => panic!("the database accepted: {sql}"),
        Err(e) => e.to_string(),
    }
}

const SEED: &str = "
    INSERT INTO users (username, role, password_hash) VALUES ('ann', 'annotator', '$argon2id$v=19$x');
    INSERT INTO projects (name) VALUES ('p');
    INSERT INTO runs (kind, config) VALUES ('sft', '{}');
    INSERT INTO models (name, latest_version) VALUES ('m', 1);
    INSERT INTO model_versions (model_id, version, kind, run_id, artifact_uri, artifact_sha256, artifact_size)
        VALUES (1, 1, 'sft', 1, 'file:///a', sha256('a'), 1);
";

#[test]
fn every_migration_applies_to_an_empty_database() {
    with_db(|db| async move {
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(applied as usize, registry::db::MIGRATOR.iter().count());
    });
}

#[test]
fn a_model_version_is_immutable_except_for_its_tags() {
    with_db(|db| async move {
        sqlx::raw_sql(SEED).execute(&db.pool).await.unwrap();
        let e = refused(&db.pool, "UPDATE model_versions SET artifact_uri = 'file:///b'").await;
        assert!(e.contains("immutable"), "{e}");
        let e = refused(&db.pool, "UPDATE model_versions SET metrics = '{\"x\": 1}'").await;
        assert!(e.contains("only its tags"), "{e}");
        let e = refused(&db.pool, "DELETE FROM model_versions").await;
        assert!(e.contains("cannot be deleted"), "{e}");
        sqlx::raw_sql("UPDATE model_versions SET tags = '{best}'").execute(&db.pool).await.unwrap();
        let uri: String =
            sqlx::query_scalar("SELECT artifact_uri FROM model_versions").fetch_one(&db.pool).await.unwrap();
        assert_eq!(uri, "file:///a");
    });
}

#[test]
fn a_ranking_must_put_every_sample_in_one_gapless_group() {
    with_db(|db| async move {
        sqlx::raw_sql(SEED).execute(&db.pool).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO prompts (project_id, text) VALUES (1, 'say hi');
             INSERT INTO sample_batches (project_id) VALUES (1);
             INSERT INTO samples (batch_id, project_id, prompt_id, text)
                 SELECT 1, 1, 1, 's' || g FROM generate_series(0, 3) g;
             INSERT INTO tasks (project_id, prompt_id, kind, k) VALUES (1, 1, 'ranking', 4);
             INSERT INTO task_samples (task_id, prompt_id, position, sample_id)
                 SELECT 1, 1, g, g + 1 FROM generate_series(0, 3) g;
             INSERT INTO assignments (task_id, annotator_id, lease_until) VALUES (1, 1, now());",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        let insert = |ranks: &str| {
            format!(
                "INSERT INTO rankings (task_id, k, annotator_id, assignment_id, ranks, idempotency_key)
                 VALUES (1, 4, 1, 1, '{ranks}', gen_random_uuid())"
            )
        };
        // A gap (no group 1), a missing sample, and one sample too many.
        for bad in ["{0,2,2,3}", "{0,1,2}", "{0,1,2,3,3}", "{-1,0,1,2}"] {
            let e = refused(&db.pool, &insert(bad)).await;
            assert!(e.contains("check constraint"), "{bad}: {e}");
        }
        let e = refused(
            &db.pool,
            "INSERT INTO rankings (task_id, k, annotator_id, assignment_id, idempotency_key)
                 VALUES (1, 4, 1, 1, gen_random_uuid())",
        )
        .await;
        assert!(e.contains("check constraint"), "a ranking without an order must say all bad: {e}");
        sqlx::raw_sql(&insert("{1,0,1,2}")).execute(&db.pool).await.unwrap();
    });
}

#[test]
fn a_task_cannot_show_a_sample_of_another_prompt() {
    with_db(|db| async move {
        sqlx::raw_sql(SEED).execute(&db.pool).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO prompts (project_id, text) VALUES (1, 'one'), (1, 'two');
             INSERT INTO sample_batches (project_id) VALUES (1);
             INSERT INTO samples (batch_id, project_id, prompt_id, text) VALUES (1, 1, 1, 'a'), (1, 1, 2, 'b');
             INSERT INTO tasks (project_id, prompt_id, kind, k) VALUES (1, 1, 'ranking', 2);
             INSERT INTO task_samples (task_id, prompt_id, position, sample_id) VALUES (1, 1, 0, 1);",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        let e = refused(
            &db.pool,
            "INSERT INTO task_samples (task_id, prompt_id, position, sample_id) VALUES (1, 1, 1, 2)",
        )
        .await;
        assert!(e.contains("foreign key"), "{e}");
    });
}

#[test]
fn the_same_prompt_text_is_stored_once_per_project() {
    with_db(|db| async move {
        sqlx::raw_sql(SEED).execute(&db.pool).await.unwrap();
        sqlx::raw_sql("INSERT INTO prompts (project_id, text) VALUES (1, 'Ünïcode prompt')")
            .execute(&db.pool)
            .await
            .unwrap();
        let e =
            refused(&db.pool, "INSERT INTO prompts (project_id, text) VALUES (1, 'Ünïcode prompt')").await;
        assert!(e.contains("unique"), "{e}");
        // Surrounding whitespace does not make another prompt.
        let e = refused(&db.pool, "INSERT INTO prompts (project_id, text) VALUES (1, E' Ünïcode prompt\n')")
            .await;
        assert!(e.contains("unique"), "{e}");
        let hash: Vec<u8> =
            sqlx::query_scalar("SELECT text_key FROM prompts").fetch_one(&db.pool).await.unwrap();
        use sha2::Digest;
        assert_eq!(hash, sha2::Sha256::digest("Ünïcode prompt".as_bytes()).to_vec());
    });
}

#[test]
fn lineage_cannot_be_added_to_an_old_version() {
    with_db(|db| async move {
        sqlx::raw_sql(SEED).execute(&db.pool).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO runs (kind, config) VALUES ('reward', '{}');
             INSERT INTO model_versions (model_id, version, kind, run_id, artifact_uri, artifact_sha256, artifact_size)
                 VALUES (1, 2, 'reward', 2, 'file:///b', sha256('b'), 1);",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        let e = refused(
            &db.pool,
            "INSERT INTO version_parents (version_id, parent_id, role) VALUES (2, 1, 'sft')",
        )
        .await;
        assert!(e.contains("never added later"), "{e}");
        // In the transaction that writes the version, its lineage goes in.
        sqlx::raw_sql(
            "BEGIN;
             INSERT INTO runs (kind, config) VALUES ('ppo', '{}');
             INSERT INTO model_versions (model_id, version, kind, run_id, artifact_uri, artifact_sha256, artifact_size)
                 VALUES (1, 3, 'policy', 3, 'file:///c', sha256('c'), 1);
             INSERT INTO version_parents (version_id, parent_id, role) VALUES (3, 1, 'sft');
             COMMIT;",
        )
        .execute(&db.pool)
        .await
        .unwrap();
    });
}

#[test]
fn a_prompt_of_only_whitespace_is_refused() {
    with_db(|db| async move {
        sqlx::raw_sql(SEED).execute(&db.pool).await.unwrap();
        let e = refused(&db.pool, "INSERT INTO prompts (project_id, text) VALUES (1, E'\\n\\t ')").await;
        assert!(e.contains("prompts_text_check"), "{e}");
    });
}
