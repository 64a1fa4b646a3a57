//! Gang-scheduled claims on a real Postgres: a run that asks for `world_size` workers is
//! claimed whole or not at all, concurrent claimers never leave two runs half-staffed,
//! and each rank's heartbeat tells the gang when another rank is lost.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ::registry::error::RegistryError;
use ::registry::gangs::{self, GangBeat, Rendezvous};
use ::registry::runs::{self, NewRun, RunKind, RunStatus};
use serde_json::json;
use sqlx::PgPool;

use crate::db::with_db;

const LEASE: Duration = Duration::from_secs(600);
const IDLE: Duration = Duration::from_secs(600);

async fn enqueue_gang(pool: &PgPool, world_size: i64) -> i64 {
    let config = json!({ "model_name": "m", "base": "b", "world_size": world_size });
    runs::enqueue(pool, &NewRun { project_id: None, kind: RunKind::Sft, config, created_by: None })
        .await
        .unwrap()
}

/// (rank, worker, state) of the run's ranks.
async fn ranks(pool: &PgPool, run_id: i64) -> Vec<(i32, String, String)> {
    gangs::ranks(pool, run_id).await.unwrap().into_iter().map(|r| (r.rank, r.worker, r.state)).collect()
}

#[test]
fn a_gang_run_is_claimed_with_idle_workers_as_its_ranks_or_not_at_all() {
    with_db(|db| async move {
        let pool = &db.pool;
        let gang = enqueue_gang(pool, 3).await;
        assert_eq!(runs::get(pool, gang).await.unwrap().world_size, 3);

        // Alone, a worker cannot staff a gang of three: the run stays queued, nothing is
        // half-claimed, and the worker waits as idle.
        assert!(runs::claim_or_wait(pool, "a", LEASE, IDLE).await.unwrap().is_none());
        assert_eq!(runs::get(pool, gang).await.unwrap().status, RunStatus::Queued);
        assert!(ranks(pool, gang).await.is_empty());
        // A younger run on one worker is not held up by the older gang run.
        let single = runs::enqueue(
            pool,
            &NewRun { project_id: None, kind: RunKind::Sft, config: json!({}), created_by: None },
        )
        .await
        .unwrap();
        assert_eq!(runs::claim_or_wait(pool, "b", LEASE, IDLE).await.unwrap().unwrap().id, single);
        // b is busy now; with one idle worker (a), c still cannot staff three.
        assert!(runs::claim_or_wait(pool, "c", LEASE, IDLE).await.unwrap().is_none());
        assert_eq!(runs::get(pool, gang).await.unwrap().status, RunStatus::Queued);

        // d claims the gang with a and c, the two idle workers, in one transaction.
        let claimed = runs::claim_or_wait(pool, "d", LEASE, IDLE).await.unwrap().unwrap();
        assert_eq!((claimed.id, claimed.rank, claimed.world_size), (gang, 0, 3));
        let mut staffed = ranks(pool, gang).await;
        staffed[1..].sort_by(|x, y| x.1.cmp(&y.1));
        let names: Vec<(&str, &str)> = staffed.iter().map(|(_, w, s)| (w.as_str(), s.as_str())).collect();
        assert_eq!(names, [("d", "training"), ("a", "assigned"), ("c", "assigned")]);
        // A plain claim by another worker gets nothing: the gang's ranks are taken.
        assert!(runs::claim(pool, "e", LEASE).await.unwrap().is_none());

        // a takes its rank up at its next ask, and waits for the rendezvous.
        let rank = runs::claim_or_wait(pool, "a", LEASE, IDLE).await.unwrap().unwrap();
        assert_eq!((rank.id, rank.world_size, rank.attempts), (gang, 3, 1));
        assert!(rank.rank == 1 || rank.rank == 2);
        assert_eq!(gangs::rendezvous(pool, gang, 1).await.unwrap(), Rendezvous::Waiting);
        gangs::publish_rendezvous(pool, gang, "d", "10.0.0.7:29500").await.unwrap();
        assert_eq!(gangs::rendezvous(pool, gang, 1).await.unwrap(), Rendezvous::At("10.0.0.7:29500".into()));
        assert_eq!(runs::get(pool, gang).await.unwrap().rendezvous.as_deref(), Some("10.0.0.7:29500"));
        // Only the worker holding the run publishes.
        let refused = gangs::publish_rendezvous(pool, gang, "a", "10.0.0.8:1").await.unwrap_err();
        assert!(matches!(refused, RegistryError::LeaseLost { .. }), "{refused}");
        assert_eq!(gangs::beat(pool, gang, rank.rank, 1, "a", LEASE).await.unwrap(), GangBeat::Continue);
    });
}

#[test]
fn a_rank_whose_lease_runs_out_is_lost_and_every_other_rank_hears_it() {
    with_db(|db| async move {
        let pool = &db.pool;
        let gang = enqueue_gang(pool, 2).await;
        assert!(runs::claim_or_wait(pool, "one", LEASE, IDLE).await.unwrap().is_none());
        let leader = runs::claim_or_wait(pool, "zero", LEASE, IDLE).await.unwrap().unwrap();
        let other =
            runs::claim_or_wait(pool, "one", Duration::from_millis(300), IDLE).await.unwrap().unwrap();
        assert_eq!((leader.rank, other.rank), (0, 1));
        assert_eq!(gangs::beat(pool, gang, 0, 1, "zero", LEASE).await.unwrap(), GangBeat::Continue);
        // "one" dies: it stops renewing, and rank 0's next beat says so.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            gangs::beat(pool, gang, 0, 1, "zero", LEASE).await.unwrap(),
            GangBeat::RankLost { rank: 1, worker: "one".into() }
        );
        let listed = gangs::ranks(pool, gang).await.unwrap();
        assert!(listed[1].expired && !listed[0].expired, "{listed:?}");

        // Rank 0 gives the run back; the next claim is a new attempt with new ranks, and a
        // beat of the old attempt is told it is over.
        runs::release(pool, gang, "zero").await.unwrap();
        assert!(runs::claim_or_wait(pool, "two", LEASE, IDLE).await.unwrap().is_none());
        let again = runs::claim_or_wait(pool, "zero", LEASE, IDLE).await.unwrap().unwrap();
        assert_eq!((again.id, again.attempts, again.rank, again.resume), (gang, 2, 0, true));
        assert_eq!(gangs::beat(pool, gang, 1, 1, "one", LEASE).await.unwrap(), GangBeat::Over);
        let now: Vec<(i32, String)> = ranks(pool, gang).await.into_iter().map(|(r, w, _)| (r, w)).collect();
        assert_eq!(now, [(0, "zero".into()), (1, "two".into())]);

        // A rank that fails says so, and the others stop too.
        let two = runs::claim_or_wait(pool, "two", LEASE, IDLE).await.unwrap().unwrap();
        gangs::leave(pool, gang, two.rank, 2, "two", false).await.unwrap();
        assert_eq!(
            gangs::beat(pool, gang, 0, 2, "zero", LEASE).await.unwrap(),
            GangBeat::RankLost { rank: 1, worker: "two".into() }
        );
    });
}

#[test]
fn workers_claiming_at_once_staff_every_gang_whole_and_none_twice() {
    with_db(|db| async move {
        let pool = db.pool.clone();
        // Six workers, three gangs of two: were gangs half-claimed, a worker waiting in one
        // could keep another from forming, and some would never be staffed.
        let gangs_ids =
            [enqueue_gang(&pool, 2).await, enqueue_gang(&pool, 2).await, enqueue_gang(&pool, 2).await];
        let workers: Vec<_> = (0..6)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let name = format!("w{i}");
                    let deadline = Instant::now() + Duration::from_secs(30);
                    loop {
                        if let Some(run) =
                            runs::claim_or_wait(&pool, &name, LEASE, Duration::from_secs(5)).await.unwrap()
                        {
                            return (name, run.id, run.rank);
                        }
                        assert!(Instant::now() < deadline, "{name} was never given a rank");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        let mut by_run: HashMap<i64, Vec<(i32, String)>> = HashMap::new();
        for worker in workers {
            let (name, run, rank) = worker.await.unwrap();
            by_run.entry(run).or_default().push((rank, name));
        }
        for id in gangs_ids {
            let mut members = by_run.remove(&id).unwrap_or_default();
            members.sort();
            assert_eq!(members.iter().map(|(r, _)| *r).collect::<Vec<_>>(), [0, 1], "run {id}: {members:?}");
            let mut listed: Vec<(i32, String)> =
                ranks(&pool, id).await.into_iter().map(|(r, w, _)| (r, w)).collect();
            listed.sort();
            assert_eq!(listed, members, "the ranks each worker took are the run's");
        }
    });
}

#[test]
fn a_world_size_outside_1_to_64_or_on_a_stage_that_trains_alone_is_refused_by_name() {
    with_db(|db| async move {
        for bad in [json!(0), json!(65), json!("two"), json!(1.5)] {
            let config = json!({ "world_size": bad });
            let e = runs::enqueue(
                &db.pool,
                &NewRun { project_id: None, kind: RunKind::Sft, config, created_by: None },
            )
            .await
            .unwrap_err();
            assert!(e.to_string().starts_with("world_size must be a whole number from 1 to 64"), "{e}");
        }
    });
    let dpo =
        spec::RunSpec::parse(RunKind::Dpo, &json!({ "model_name": "d", "policy": "s:1", "world_size": 2 }));
    assert!(dpo.unwrap_err().to_string().contains("a dpo run takes no `world_size`"));
    let sft =
        spec::RunSpec::parse(RunKind::Sft, &json!({ "model_name": "s", "base": "b:1", "world_size": 65 }));
    assert!(sft.unwrap_err().to_string().contains("world_size"));
    assert!(spec::RunSpec::parse(
        RunKind::Sft,
        &json!({ "model_name": "s", "base": "b:1", "world_size": 2 })
    )
    .is_ok());
}
