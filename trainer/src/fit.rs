//! Fitting the softmax head: L2-regularised multinomial logistic regression on
//! unit-length embeddings, plus unit class centroids for the open-set gate.
//! Deterministic: zero start, full-batch Nesterov gradient descent, fixed steps.
//!
//! Hand-written on purpose: a few dozen lines, bit-for-bit repeatable (the same photos give
//! the same classifier file), and no linear-algebra or ML dependency for a small problem.

use recognition::HeadParams;

/// Training hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    /// L2 penalty on the weights (not the bias).
    pub l2: f32,
    pub iterations: usize,
    pub learning_rate: f32,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            l2: 1e-3,
            iterations: 1500,
            learning_rate: 1.0,
        }
    }
}

/// A trained head in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub dim: usize,
    pub classes: usize,
    /// Row-major `[dim, classes]`.
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    /// Unit centroids, row-major `[dim, classes]`.
    pub centroids: Vec<f32>,
}

impl Head {
    /// Softmax probabilities and centroid similarities for one embedding.
    pub fn scores(&self, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let mut logits = self.bias.clone();
        let mut sims = vec![0.0f32; self.classes];
        for (i, &xi) in x.iter().enumerate() {
            let w = &self.weights[i * self.classes..(i + 1) * self.classes];
            let c = &self.centroids[i * self.classes..(i + 1) * self.classes];
            for k in 0..self.classes {
                logits[k] += xi * w[k];
                sims[k] += xi * c[k];
            }
        }
        (softmax(&logits), sims)
    }

    pub fn into_params(self) -> HeadParams {
        HeadParams {
            weights: self.weights,
            bias: self.bias,
            centroids: self.centroids,
        }
    }
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// Fits the head on embeddings `xs` (each `dim` long) with labels `ys` in `0..classes`.
pub fn fit(xs: &[&[f32]], ys: &[usize], classes: usize, options: FitOptions) -> Head {
    assert_eq!(xs.len(), ys.len());
    assert!(!xs.is_empty(), "fit needs at least one sample");
    let dim = xs[0].len();
    let n = xs.len() as f32;
    let size = dim * classes;
    // Parameters: weights then bias, in one vector.
    let mut theta = vec![0.0f32; size + classes];
    let mut velocity = vec![0.0f32; size + classes];
    let momentum = 0.9f32;
    let mut grad = vec![0.0f32; size + classes];
    for _ in 0..options.iterations {
        // Nesterov: gradient at the look-ahead point.
        let look: Vec<f32> = theta
            .iter()
            .zip(&velocity)
            .map(|(t, v)| t + momentum * v)
            .collect();
        grad.iter_mut().for_each(|g| *g = 0.0);
        for (x, &y) in xs.iter().zip(ys) {
            let mut logits = look[size..].to_vec();
            for (i, &xi) in x.iter().enumerate() {
                for (k, l) in logits.iter_mut().enumerate() {
                    *l += xi * look[i * classes + k];
                }
            }
            let mut p = softmax(&logits);
            p[y] -= 1.0;
            for (i, &xi) in x.iter().enumerate() {
                for k in 0..classes {
                    grad[i * classes + k] += xi * p[k] / n;
                }
            }
            for k in 0..classes {
                grad[size + k] += p[k] / n;
            }
        }
        for (g, w) in grad[..size].iter_mut().zip(&look[..size]) {
            *g += options.l2 * w;
        }
        for ((t, v), g) in theta.iter_mut().zip(velocity.iter_mut()).zip(&grad) {
            *v = momentum * *v - options.learning_rate * g;
            *t += *v;
        }
    }
    Head {
        dim,
        classes,
        weights: theta[..size].to_vec(),
        bias: theta[size..].to_vec(),
        centroids: centroids(xs, ys, classes),
    }
}

/// Unit-length mean of each class's embeddings, row-major `[dim, classes]`.
pub fn centroids(xs: &[&[f32]], ys: &[usize], classes: usize) -> Vec<f32> {
    let dim = xs[0].len();
    let mut sums = vec![0.0f32; dim * classes];
    for (x, &y) in xs.iter().zip(ys) {
        for (i, &xi) in x.iter().enumerate() {
            sums[i * classes + y] += xi;
        }
    }
    for k in 0..classes {
        let norm = (0..dim)
            .map(|i| sums[i * classes + k].powi(2))
            .sum::<f32>()
            .sqrt()
            .max(1e-12);
        for i in 0..dim {
            sums[i * classes + k] /= norm;
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn separable_clusters_are_learned() {
        let data = [
            (unit(&[1.0, 0.1, 0.0]), 0),
            (unit(&[0.9, -0.1, 0.1]), 0),
            (unit(&[0.0, 1.0, 0.1]), 1),
            (unit(&[0.1, 0.9, -0.1]), 1),
            (unit(&[0.0, 0.1, 1.0]), 2),
            (unit(&[-0.1, 0.0, 0.9]), 2),
        ];
        let xs: Vec<&[f32]> = data.iter().map(|(x, _)| x.as_slice()).collect();
        let ys: Vec<usize> = data.iter().map(|(_, y)| *y).collect();
        let head = fit(&xs, &ys, 3, FitOptions::default());
        for (x, y) in &data {
            let (p, s) = head.scores(x);
            let best = (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
            assert_eq!(best, *y);
            assert!(p[*y] > 0.8, "{p:?}");
            assert!(s[*y] > 0.9, "{s:?}");
        }
    }

    #[test]
    fn fitting_twice_gives_identical_weights() {
        let xs_owned = [unit(&[1.0, 0.2]), unit(&[0.1, 1.0])];
        let xs: Vec<&[f32]> = xs_owned.iter().map(|x| x.as_slice()).collect();
        let a = fit(&xs, &[0, 1], 2, FitOptions::default());
        let b = fit(&xs, &[0, 1], 2, FitOptions::default());
        assert_eq!(a, b);
    }
}
