//! Choosing the open-set gate's thresholds by cross-validation.
//!
//! Genuine scores come from stratified k-fold cross-validation on the enrolled
//! photos. Impostor scores come from leave-one-person-out runs (each enrolled
//! person in turn plays the stranger against a head trained without them) and
//! from the optional `--unknown` photos scored against the full head. The
//! thresholds are the pair that accepts the most genuine photos while the
//! impostor accept rate stays within the target.

use recognition::Thresholds;
use serde::Serialize;

use crate::fit::{fit, FitOptions, Head};

/// One held-out score: the top class's probability and centroid similarity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    pub probability: f32,
    pub similarity: f32,
    /// For genuine scores: whether the top class was the right person.
    pub correct: bool,
}

/// Held-out scores for threshold selection.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Calibration {
    pub genuine: Vec<Score>,
    pub impostor: Vec<Score>,
}

/// The chosen thresholds and what they achieve on the held-out scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Choice {
    pub thresholds: Thresholds,
    /// Fraction of genuine held-out photos accepted as the right person.
    pub true_accept_rate: f64,
    /// Fraction of impostor photos accepted as anybody.
    pub false_accept_rate: f64,
    /// Closed-set accuracy of the held-out genuine photos (top class right).
    pub closed_set_accuracy: f64,
}

fn top(head: &Head, x: &[f32]) -> (usize, Score) {
    let (p, s) = head.scores(x);
    let best = (0..p.len())
        .max_by(|&a, &b| p[a].total_cmp(&p[b]))
        .unwrap_or(0);
    (
        best,
        Score {
            probability: p[best],
            similarity: s[best],
            correct: false,
        },
    )
}

/// Collects genuine and impostor scores. `xs`/`ys` are the enrolled
/// embeddings and labels, `unknown` photos of people who must not get in.
pub fn calibrate(
    xs: &[&[f32]],
    ys: &[usize],
    classes: usize,
    unknown: &[&[f32]],
    folds: usize,
    options: FitOptions,
) -> Calibration {
    let mut cal = Calibration::default();
    // Stratified folds: the i-th photo of each person goes to fold i % folds.
    let mut seen = vec![0usize; classes];
    let fold_of: Vec<usize> = ys
        .iter()
        .map(|&y| {
            seen[y] += 1;
            (seen[y] - 1) % folds
        })
        .collect();
    for fold in 0..folds {
        let (train, test): (Vec<usize>, Vec<usize>) =
            (0..xs.len()).partition(|&i| fold_of[i] != fold);
        if test.is_empty() || train.is_empty() {
            continue;
        }
        let tx: Vec<&[f32]> = train.iter().map(|&i| xs[i]).collect();
        let ty: Vec<usize> = train.iter().map(|&i| ys[i]).collect();
        let head = fit(&tx, &ty, classes, options);
        for &i in &test {
            // A person with no photo left in training cannot be recognised: skip.
            if !ty.contains(&ys[i]) {
                continue;
            }
            let (best, mut score) = top(&head, xs[i]);
            score.correct = best == ys[i];
            cal.genuine.push(score);
        }
    }
    if classes >= 2 {
        for stranger in 0..classes {
            let keep: Vec<usize> = (0..xs.len()).filter(|&i| ys[i] != stranger).collect();
            let tx: Vec<&[f32]> = keep.iter().map(|&i| xs[i]).collect();
            let ty: Vec<usize> = keep
                .iter()
                .map(|&i| if ys[i] > stranger { ys[i] - 1 } else { ys[i] })
                .collect();
            let head = fit(&tx, &ty, classes - 1, options);
            for i in (0..xs.len()).filter(|&i| ys[i] == stranger) {
                cal.impostor.push(top(&head, xs[i]).1);
            }
        }
    }
    if !unknown.is_empty() {
        let head = fit(xs, ys, classes, options);
        for x in unknown {
            cal.impostor.push(top(&head, x).1);
        }
    }
    cal
}

fn rates(cal: &Calibration, t: &Thresholds) -> (f64, f64) {
    let accepted_genuine = cal
        .genuine
        .iter()
        .filter(|s| s.correct && t.accepts(s.probability, s.similarity))
        .count();
    let accepted_impostor = cal
        .impostor
        .iter()
        .filter(|s| t.accepts(s.probability, s.similarity))
        .count();
    (
        accepted_genuine as f64 / cal.genuine.len().max(1) as f64,
        accepted_impostor as f64 / cal.impostor.len().max(1) as f64,
    )
}

/// Picks the gate's thresholds.
///
/// Among the pairs whose false-accept rate on the impostor scores is within
/// `target_far`, the best true-accept rate TAR* is found; then the most
/// demanding pair (highest similarity threshold, then highest probability
/// threshold) that still accepts at least `TAR* − tar_slack` is taken. The
/// strangers seen in calibration are few, so the gate is pushed as far from
/// them as the genuine photos allow: at the door a rejected frame costs a
/// fraction of a second (the next frame decides again), a stranger let in
/// costs the office.
pub fn choose(cal: &Calibration, target_far: f64, tar_slack: f64) -> Choice {
    let grid: Vec<Thresholds> = (0..20)
        .flat_map(|p| {
            (-20..=100).map(move |s| Thresholds {
                min_probability: p as f32 * 0.05,
                min_similarity: s as f32 * 0.01,
            })
        })
        .collect();
    let feasible: Vec<(Thresholds, f64)> = grid
        .into_iter()
        .filter_map(|t| {
            let (tar, far) = rates(cal, &t);
            (far <= target_far).then_some((t, tar))
        })
        .collect();
    let best_tar = feasible.iter().map(|(_, tar)| *tar).fold(0.0, f64::max);
    let floor = (best_tar - tar_slack).max(0.0);
    let thresholds = feasible
        .iter()
        .filter(|(_, tar)| *tar >= floor && *tar > 0.0)
        .map(|(t, _)| *t)
        .max_by(|a, b| {
            a.min_similarity
                .total_cmp(&b.min_similarity)
                .then(a.min_probability.total_cmp(&b.min_probability))
        })
        .unwrap_or(Thresholds {
            // Nothing meets the target: refuse everybody rather than guess.
            min_probability: 1.0,
            min_similarity: 1.0,
        });
    let (tar, far) = rates(cal, &thresholds);
    let correct = cal.genuine.iter().filter(|s| s.correct).count();
    Choice {
        thresholds,
        true_accept_rate: tar,
        false_accept_rate: far,
        closed_set_accuracy: correct as f64 / cal.genuine.len().max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(probability: f32, similarity: f32, correct: bool) -> Score {
        Score {
            probability,
            similarity,
            correct,
        }
    }

    #[test]
    fn thresholds_sit_between_impostors_and_genuine_photos() {
        let cal = Calibration {
            genuine: vec![score(0.9, 0.8, true), score(0.8, 0.7, true)],
            impostor: vec![score(0.9, 0.4, false), score(0.6, 0.5, false)],
        };
        let choice = choose(&cal, 0.0, 0.0);
        assert_eq!(choice.false_accept_rate, 0.0);
        assert_eq!(choice.true_accept_rate, 1.0);
        let s = choice.thresholds.min_similarity;
        // As demanding as the genuine photos allow.
        assert_eq!(s, 0.7);
    }

    #[test]
    fn no_feasible_threshold_refuses_everybody() {
        let cal = Calibration {
            genuine: vec![score(0.5, 0.5, true)],
            impostor: vec![score(0.99, 1.0, false)],
        };
        let choice = choose(&cal, 0.0, 0.05);
        assert_eq!(choice.false_accept_rate, 0.0);
        assert_eq!(choice.true_accept_rate, 0.0);
    }
}

#[cfg(test)]
mod slack_tests {
    use super::*;

    #[test]
    fn slack_trades_a_few_genuine_photos_for_distance_from_strangers() {
        let genuine: Vec<Score> = (0..20)
            .map(|i| Score {
                probability: 0.95,
                similarity: 0.40 + i as f32 * 0.02,
                correct: true,
            })
            .collect();
        let cal = Calibration {
            genuine,
            impostor: vec![Score {
                probability: 0.9,
                similarity: 0.35,
                correct: false,
            }],
        };
        let strict = choose(&cal, 0.0, 0.0);
        let slack = choose(&cal, 0.0, 0.10);
        assert_eq!(strict.true_accept_rate, 1.0);
        assert!(slack.true_accept_rate >= 0.9);
        assert!(slack.thresholds.min_similarity > strict.thresholds.min_similarity);
    }
}
