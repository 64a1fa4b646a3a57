//! `plumb demo --quick`: the demo's whole loop, shortened, on a test database. The full
//! demo (`make demo`) runs the same stages at their real size; this checks that every
//! stage runs through the platform and that the registry ends up with the loop's lineage.

use registry::versions;

use crate::db::with_db;
use crate::helpers::plumb_with_env;

#[test]
fn the_quick_demo_runs_every_stage_and_registers_the_loop() {
    with_db(|db| async move {
        let home = tempfile::tempdir().unwrap();
        let (url, dir) = (db.url(), home.path().to_str().unwrap().to_owned());
        let out = tokio::task::spawn_blocking(move || {
            plumb_with_env(
                &["demo", "--home", &dir, "--quick", "--no-serve", "--device", "cpu", "--port", "0"],
                &[("DATABASE_URL", &url), ("OMP_NUM_THREADS", "1")],
            )
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        for needle in [
            "registered base:1",
            "48 demonstrations",
            "8 rankings",
            "registered sft:1",
            "registered rm:1",
            "registered policy:1",
            "SFT over base: oracle",
            "PPO over SFT: oracle",
            "RM agreement with the oracle",
        ] {
            assert!(stdout.contains(needle), "{needle:?} not in:\n{stdout}");
        }
        let version = |r: &'static str| {
            let pool = db.pool.clone();
            async move { versions::resolve(&pool, r).await.unwrap() }
        };
        let (base, sft, rm, policy) = (
            version("base:1").await,
            version("sft:1").await,
            version("rm:1").await,
            version("policy:1").await,
        );
        let parents = |v: &versions::ModelVersion| {
            let mut p: Vec<(i64, String)> =
                v.parents.iter().map(|p| (p.version_id, p.role.clone())).collect();
            p.sort();
            p
        };
        assert_eq!(parents(&sft), [(base.id, "base".to_owned())]);
        assert_eq!(parents(&rm), [(sft.id, "sft".to_owned())]);
        assert_eq!(parents(&policy), [(sft.id, "sft".to_owned()), (rm.id, "reward".to_owned())]);
        // A second run finds the demo built and does not build it again.
        let (url, dir) = (db.url(), home.path().to_str().unwrap().to_owned());
        let again = tokio::task::spawn_blocking(move || {
            plumb_with_env(
                &["demo", "--home", &dir, "--quick", "--no-serve", "--device", "cpu", "--port", "0"],
                &[("DATABASE_URL", &url)],
            )
        })
        .await
        .unwrap();
        assert!(again.status.success());
        assert!(String::from_utf8_lossy(&again.stdout).contains("already built"));
        assert_eq!(versions::list_versions(&db.pool, "policy").await.unwrap().len(), 1);
    });
}

#[test]
fn a_demo_that_stopped_half_way_is_not_served_as_if_it_were_built() {
    with_db(|db| async move {
        let new = labeling::projects::NewProject {
            name: labeling::domain::ProjectName::parse("demo").unwrap(),
            guidelines: Default::default(),
            overlap: Default::default(),
            samples_per_task: Default::default(),
            created_by: None,
        };
        labeling::projects::create_project(&db.pool, &new).await.unwrap();
        let home = tempfile::tempdir().unwrap();
        let (url, dir) = (db.url(), home.path().to_str().unwrap().to_owned());
        let out = tokio::task::spawn_blocking(move || {
            plumb_with_env(
                &["demo", "--home", &dir, "--quick", "--no-serve", "--device", "cpu", "--port", "0"],
                &[("DATABASE_URL", &url)],
            )
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("stopped before it finished") && stderr.contains("start over"), "{stderr}");
    });
}
