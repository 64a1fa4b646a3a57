//! How much annotators agree on the tasks they ranked in common.
//!
//! For each pair of annotators and each task both ranked (with an order; all-bad
//! rankings without one are left out), two measures of their rank vectors
//! (`ranks[i]` = group of sample i, 0 the best):
//! - the pairwise agreement rate: over the sample pairs that both ordered strictly,
//!   the fraction they ordered the same way (InstructGPT reports this one);
//! - Kendall's τ-b, which also counts a pair one tied and the other did not against
//!   them, and is undefined when either ranking ties everything.
//!
//! Aggregates: an annotator's agreement rate is the mean of their rates with each
//! partner weighted by the sample pairs compared (so: agreed / compared over all their
//! shared tasks); their τ is the mean of the per-task τ over all (partner, task)
//! comparisons where τ is defined. The project's are the same over every annotator pair.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sqlx::PgPool;

use crate::error::Result;

/// Sample pairs that two annotators both ordered strictly, and how many of those they
/// ordered the same way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PairCounts {
    pub agreed: usize,
    pub compared: usize,
}

impl PairCounts {
    /// agreed / compared; `None` when no pair was compared.
    pub fn rate(self) -> Option<f64> {
        (self.compared > 0).then(|| self.agreed as f64 / self.compared as f64)
    }

    fn add(&mut self, other: PairCounts) {
        self.agreed += other.agreed;
        self.compared += other.compared;
    }
}

/// Pairwise agreement of two rank vectors of one task (same length).
pub fn pair_agreement(a: &[i16], b: &[i16]) -> PairCounts {
    let mut counts = PairCounts::default();
    if a.len() != b.len() {
        return counts;
    }
    for i in 0..a.len() {
        for j in i + 1..a.len() {
            let (x, y) = (a[i].cmp(&a[j]), b[i].cmp(&b[j]));
            if x.is_ne() && y.is_ne() {
                counts.compared += 1;
                counts.agreed += usize::from(x == y);
            }
        }
    }
    counts
}

/// Kendall's τ-b of two rank vectors: (n_c − n_d) / √((n_0 − n_1)(n_0 − n_2)), where
/// n_0 counts all pairs and n_1, n_2 the pairs tied in `a` and in `b`. `None` when the
/// lengths differ, or either vector ties everything (the denominator is 0).
pub fn kendall_tau_b(a: &[i16], b: &[i16]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let (mut concordant, mut discordant, mut tied_a, mut tied_b, mut all) = (0i64, 0i64, 0i64, 0i64, 0i64);
    for i in 0..a.len() {
        for j in i + 1..a.len() {
            all += 1;
            let (x, y) = (a[i].cmp(&a[j]), b[i].cmp(&b[j]));
            tied_a += i64::from(x.is_eq());
            tied_b += i64::from(y.is_eq());
            if x.is_ne() && y.is_ne() {
                if x == y {
                    concordant += 1;
                } else {
                    discordant += 1;
                }
            }
        }
    }
    let denominator = (((all - tied_a) * (all - tied_b)) as f64).sqrt();
    (denominator > 0.0).then(|| (concordant - discordant) as f64 / denominator)
}

/// One annotator's ranking of one task, as the agreement measures read it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRanks {
    pub task_id: i64,
    pub annotator_id: i64,
    pub ranks: Vec<i16>,
}

/// Agreement of one annotator with everyone who shared a task with them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnnotatorAgreement {
    pub annotator_id: i64,
    /// Annotators they shared at least one task with.
    pub partners: usize,
    /// Tasks they ranked that someone else ranked too.
    pub tasks_shared: usize,
    pub pairs: PairCounts,
    pub agreement_rate: Option<f64>,
    pub kendall_tau: Option<f64>,
}

/// Agreement of two annotators over the tasks they both ranked.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PairAgreement {
    pub annotator_a: i64,
    pub annotator_b: i64,
    pub tasks_shared: usize,
    pub pairs: PairCounts,
    pub agreement_rate: Option<f64>,
    pub kendall_tau: Option<f64>,
}

/// Agreement over all annotator pairs of a project.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProjectAgreement {
    pub pairs: PairCounts,
    pub agreement_rate: Option<f64>,
    pub kendall_tau: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgreementReport {
    /// By annotator id.
    pub per_annotator: Vec<AnnotatorAgreement>,
    /// By (annotator_a, annotator_b), annotator_a < annotator_b.
    pub per_pair: Vec<PairAgreement>,
    pub project: ProjectAgreement,
    /// Tasks ranked (with an order) by at least two annotators.
    pub tasks_shared: usize,
}

/// Running sums for one annotator, one annotator pair, or the project.
#[derive(Default)]
struct Sums {
    pairs: PairCounts,
    tau_sum: f64,
    taus: usize,
    tasks: BTreeSet<i64>,
    partners: BTreeSet<i64>,
}

impl Sums {
    fn add(&mut self, task_id: i64, counts: PairCounts, tau: Option<f64>) {
        self.pairs.add(counts);
        if let Some(tau) = tau {
            self.tau_sum += tau;
            self.taus += 1;
        }
        self.tasks.insert(task_id);
    }

    fn tau(&self) -> Option<f64> {
        (self.taus > 0).then(|| self.tau_sum / self.taus as f64)
    }
}

/// Agreement over a set of rankings (at most one per task and annotator).
pub fn agreement(rankings: &[TaskRanks]) -> AgreementReport {
    let mut by_task: BTreeMap<i64, Vec<&TaskRanks>> = BTreeMap::new();
    for r in rankings {
        by_task.entry(r.task_id).or_default().push(r);
    }
    let mut annotators: BTreeMap<i64, Sums> = BTreeMap::new();
    let mut pairs: BTreeMap<(i64, i64), Sums> = BTreeMap::new();
    let mut project = Sums::default();
    let mut tasks_shared = 0;
    for (&task_id, task) in &by_task {
        if task.len() < 2 {
            continue;
        }
        tasks_shared += 1;
        for (n, x) in task.iter().enumerate() {
            for y in &task[n + 1..] {
                let counts = pair_agreement(&x.ranks, &y.ranks);
                let tau = kendall_tau_b(&x.ranks, &y.ranks);
                let (a, b) = (x.annotator_id.min(y.annotator_id), x.annotator_id.max(y.annotator_id));
                pairs.entry((a, b)).or_default().add(task_id, counts, tau);
                project.add(task_id, counts, tau);
                for (me, partner) in [(a, b), (b, a)] {
                    let sums = annotators.entry(me).or_default();
                    sums.add(task_id, counts, tau);
                    sums.partners.insert(partner);
                }
            }
        }
    }
    AgreementReport {
        per_annotator: annotators
            .into_iter()
            .map(|(annotator_id, s)| AnnotatorAgreement {
                annotator_id,
                partners: s.partners.len(),
                tasks_shared: s.tasks.len(),
                pairs: s.pairs,
                agreement_rate: s.pairs.rate(),
                kendall_tau: s.tau(),
            })
            .collect(),
        per_pair: pairs
            .into_iter()
            .map(|((annotator_a, annotator_b), s)| PairAgreement {
                annotator_a,
                annotator_b,
                tasks_shared: s.tasks.len(),
                pairs: s.pairs,
                agreement_rate: s.pairs.rate(),
                kendall_tau: s.tau(),
            })
            .collect(),
        project: ProjectAgreement {
            pairs: project.pairs,
            agreement_rate: project.pairs.rate(),
            kendall_tau: project.tau(),
        },
        tasks_shared,
    }
}

/// Agreement on a project's ranking tasks.
pub async fn project_agreement(pool: &PgPool, project_id: i64) -> Result<AgreementReport> {
    Ok(agreement(&project_rankings(pool, project_id).await?))
}

/// The rankings with an order of a project's ranking tasks, by task and annotator.
pub async fn project_rankings(pool: &PgPool, project_id: i64) -> Result<Vec<TaskRanks>> {
    let rows: Vec<(i64, i64, Vec<i16>)> = sqlx::query_as(
        "SELECT r.task_id, r.annotator_id, r.ranks FROM current_rankings r JOIN tasks t ON t.id = r.task_id
         WHERE t.project_id = $1 AND t.kind = 'ranking' AND r.ranks IS NOT NULL AND r.import_source_id IS NULL
         ORDER BY r.task_id, r.annotator_id",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(task_id, annotator_id, ranks)| TaskRanks { task_id, annotator_id, ranks })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn identical_and_reversed_orders_give_tau_one_and_minus_one() {
        assert_eq!(kendall_tau_b(&[0, 1, 2, 3], &[0, 1, 2, 3]), Some(1.0));
        assert_eq!(kendall_tau_b(&[0, 1, 2], &[2, 1, 0]), Some(-1.0));
        assert_eq!(pair_agreement(&[0, 1, 2], &[2, 1, 0]), PairCounts { agreed: 0, compared: 3 });
    }

    /// Pairs (0,1) tied in a; (0,2) and (1,2) concordant: n_c = 2, n_0 = 3, n_1 = 1,
    /// n_2 = 0, so τ-b = 2 / √(2 · 3) (scipy's kendalltau gives 0.8164965809).
    #[test]
    fn a_tie_in_one_ranking_lowers_tau_b_by_its_denominator() {
        let tau = kendall_tau_b(&[0, 0, 1], &[0, 1, 2]).unwrap();
        assert!(close(tau, 2.0 / 6f64.sqrt()), "{tau}");
        assert_eq!(pair_agreement(&[0, 0, 1], &[0, 1, 2]), PairCounts { agreed: 2, compared: 2 });
    }

    /// a = [0,1,1,2], b = [1,0,2,2]: (0,1) discordant; (0,2), (0,3), (1,3) concordant;
    /// (1,2) tied in a; (2,3) tied in b. τ-b = (3 − 1) / √(5 · 5) = 0.4; agreement 3/4.
    #[test]
    fn ties_in_both_rankings_are_left_out_of_the_agreement_rate() {
        let (a, b) = ([0, 1, 1, 2], [1, 0, 2, 2]);
        assert!(close(kendall_tau_b(&a, &b).unwrap(), 0.4));
        let counts = pair_agreement(&a, &b);
        assert_eq!(counts, PairCounts { agreed: 3, compared: 4 });
        assert_eq!(counts.rate(), Some(0.75));
    }

    #[test]
    fn tau_is_undefined_when_a_ranking_ties_everything() {
        assert_eq!(kendall_tau_b(&[0, 0, 0], &[0, 1, 2]), None);
        assert_eq!(kendall_tau_b(&[0, 1], &[0, 1, 2]), None);
        assert_eq!(pair_agreement(&[0, 0, 0], &[0, 1, 2]).rate(), None);
    }

    /// Annotators 1 and 2 agree fully on task 10 (3 pairs); 1 and 3 disagree fully on
    /// task 11 (1 pair); annotator 4 shares nothing.
    #[test]
    fn an_annotators_rate_weights_each_partner_by_the_pairs_compared() {
        let r =
            |task_id, annotator_id, ranks: &[i16]| TaskRanks { task_id, annotator_id, ranks: ranks.to_vec() };
        let report = agreement(&[
            r(10, 1, &[0, 1, 2]),
            r(10, 2, &[0, 1, 2]),
            r(11, 1, &[0, 1]),
            r(11, 3, &[1, 0]),
            r(12, 4, &[0, 1]),
        ]);
        assert_eq!(report.tasks_shared, 2);
        let one = &report.per_annotator[0];
        assert_eq!((one.annotator_id, one.partners, one.tasks_shared), (1, 2, 2));
        assert_eq!(one.pairs, PairCounts { agreed: 3, compared: 4 });
        assert_eq!(one.agreement_rate, Some(0.75));
        assert_eq!(one.kendall_tau, Some(0.0), "the mean of τ = 1 on task 10 and τ = −1 on task 11");
        assert_eq!(report.per_annotator.len(), 3, "annotator 4 shared no task");
        assert_eq!(report.per_pair.len(), 2);
        assert_eq!((report.per_pair[1].annotator_a, report.per_pair[1].agreement_rate), (1, Some(0.0)));
        assert_eq!(report.project.agreement_rate, Some(0.75));
        assert_eq!(report.project.kendall_tau, Some(0.0));
    }
}
