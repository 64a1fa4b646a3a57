//! Issue 17, loss on every assistant turn, on the platform's path: a multi-turn
//! demonstration imported into a project, frozen and exported as `sft` (what a worker's
//! SFT run reads), is read by the trainer with its earlier assistant turn located, so
//! that SFT trains on both of the assistant's turns and on nothing else.

use labeling::formats::Format;
use labeling::imports::{self, ImportFile};
use labeling::prompts::ImportLimits;
use labeling::snapshots::{self, ExportFormat, SnapshotFilter, SnapshotKind};
use serde_json::json;
use trainer::data;
use trainer::tokenizer::{Tokenizer, TokenizerKind};

use crate::db::with_db;

/// The text SFT trains on in `d`, run by run (EOS written `<EOS>`).
fn trained_runs(d: &data::Demonstration) -> Vec<String> {
    let t = Tokenizer::new(TokenizerKind::Bytes);
    let e = trainer::sft::example(&t, 1024, 0, d).unwrap();
    let mut runs: Vec<String> = Vec::new();
    for (i, (&id, &trained)) in e.ids.iter().zip(&e.loss_mask).enumerate() {
        let token = if id == t.eos_id() { "<EOS>".to_owned() } else { t.decode(&[id]) };
        match (trained, i > 0 && e.loss_mask[i - 1]) {
            (true, true) => runs.last_mut().unwrap().push_str(&token),
            (true, false) => runs.push(token),
            _ => {}
        }
    }
    runs
}

#[test]
fn a_projects_multi_turn_demonstration_exports_for_sft_with_every_assistant_turn_trained() {
    with_db(|db| async move {
        let pool = &db.pool;
        let project: i64 = sqlx::query_scalar("INSERT INTO projects (name) VALUES ('turns') RETURNING id")
            .fetch_one(pool)
            .await
            .unwrap();
        let conversation = json!({ "messages": [
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": "Hi" },
            { "role": "assistant", "content": "Hello!" },
            { "role": "user", "content": "Bye" },
            { "role": "assistant", "content": "Bye now." },
        ] });
        let file = format!("{conversation}\n");
        let import = ImportFile { name: "turns.jsonl", format: Format::Messages, bytes: file.as_bytes() };
        let report = imports::import(pool, project, import, None, &ImportLimits::default()).await.unwrap();
        assert_eq!((report.imported.len(), report.errors.len()), (1, 0), "{:?}", report.errors);
        let stored: String = sqlx::query_scalar("SELECT text FROM prompts WHERE project_id = $1")
            .bind(project)
            .fetch_one(pool)
            .await
            .unwrap();

        let all = SnapshotFilter::default();
        let snapshot = snapshots::freeze(pool, project, SnapshotKind::Demonstrations, &all, "demos", None)
            .await
            .unwrap();
        let lines = snapshots::export(pool, snapshot.id, ExportFormat::Sft).await.unwrap();
        let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(
            line["prompt"],
            serde_json::Value::Array(conversation["messages"].as_array().unwrap()[..4].to_vec())
        );

        // As the worker does: the export written to a file, read by the SFT reader.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demonstrations.jsonl");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let demos = data::read_demonstrations(&path).unwrap();
        assert_eq!(demos[0].prompt, stored, "the model is prompted with the text the project stores");
        assert_eq!(stored, "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: Bye\n\nAssistant: ");
        assert_eq!(trained_runs(&demos[0]), ["Hello!", "Bye now.<EOS>"]);
    });
}
