//! The request plan: which example every request shows, with which corruption. Pure and
//! deterministic: a function of the workload and the data set's labels only.

use apparate_controller::rng::SplitMix64;

use super::{Corruption, Mix, Workload};
use crate::data::Domain;

/// Where one request's input comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RequestSource {
    /// An image of the data set, corrupted.
    Image {
        /// Ground-truth class.
        class: u32,
        /// Index into the data set's split.
        index: usize,
        corruption: Corruption,
        /// Seed of this image's noise.
        noise_seed: u64,
    },
    /// A sentence of one domain.
    Text {
        domain: Domain,
        /// Index into that domain's split.
        index: usize,
    },
}

/// One request of the stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannedRequest {
    /// 0-based position in the stream (the trace's request id).
    pub id: u64,
    /// Segment it belongs to.
    pub segment: usize,
    pub source: RequestSource,
}

/// Examples available to draw from: per class (images) or per domain (text), indices into
/// the loaded split.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pools {
    pub classes: Vec<Vec<usize>>,
    pub domains: Vec<(Domain, Vec<usize>)>,
}

/// A pool consumed in a seeded random order, reshuffled each time it runs out.
struct Cursor {
    order: Vec<usize>,
    next: usize,
}

impl Cursor {
    fn new(items: &[usize]) -> Self {
        Self {
            order: items.to_vec(),
            next: items.len(),
        }
    }

    fn take(&mut self, rng: &mut SplitMix64) -> usize {
        if self.next == self.order.len() {
            for i in (1..self.order.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                self.order.swap(i, j);
            }
            self.next = 0;
        }
        self.next += 1;
        self.order[self.next - 1]
    }
}

/// Plans every request. Callers check that every pool a mix can reach is non-empty.
pub(crate) fn plan(w: &Workload, pools: &Pools) -> Vec<PlannedRequest> {
    let mut rng = SplitMix64::new(w.seed ^ 0x5EED_F0A9_9A7A_7E00);
    let mut class_cursors: Vec<Cursor> = pools.classes.iter().map(|p| Cursor::new(p)).collect();
    let mut domain_cursors: Vec<(Domain, Cursor)> = pools
        .domains
        .iter()
        .map(|(d, p)| (*d, Cursor::new(p)))
        .collect();
    let mut out = Vec::with_capacity(usize::try_from(w.len()).unwrap_or(0));
    let mut id = 0u64;
    for (s, seg) in w.segments.iter().enumerate() {
        let prev = s.checked_sub(1);
        for j in 0..seg.requests {
            // Share of the way from the previous segment into this one.
            let t = if j < seg.ramp_requests {
                (j + 1) as f64 / (seg.ramp_requests + 1) as f64
            } else {
                1.0
            };
            let source = match &w.mixes[s] {
                Mix::Classes(weights) => {
                    let (from_w, from_c) = match prev.map(|p| (&w.mixes[p], &w.segments[p])) {
                        Some((Mix::Classes(pw), ps)) => (pw.as_slice(), ps.corruption),
                        _ => (weights.as_slice(), seg.corruption),
                    };
                    let blended: Vec<f64> = from_w
                        .iter()
                        .zip(weights)
                        .map(|(a, b)| a + (b - a) * t)
                        .collect();
                    let class = draw(&blended, &mut rng);
                    let index = class_cursors[class].take(&mut rng);
                    RequestSource::Image {
                        class: class as u32,
                        index,
                        corruption: from_c.lerp(&seg.corruption, t),
                        noise_seed: rng.next_u64(),
                    }
                }
                Mix::Domain(domain) => {
                    let domain = match prev.map(|p| &w.mixes[p]) {
                        Some(Mix::Domain(pd)) if rng.unit() >= t => *pd,
                        _ => *domain,
                    };
                    let cursor = domain_cursors
                        .iter_mut()
                        .find(|(d, _)| *d == domain)
                        .map(|(_, c)| c)
                        .expect("a pool per domain in use");
                    RequestSource::Text {
                        domain,
                        index: cursor.take(&mut rng),
                    }
                }
            };
            out.push(PlannedRequest {
                id,
                segment: s,
                source,
            });
            id += 1;
        }
    }
    out
}

/// Index drawn with probability proportional to `weights` (which sum to about 1).
fn draw(weights: &[f64], rng: &mut SplitMix64) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.unit() * total;
    let last = weights.iter().rposition(|&w| w > 0.0).unwrap_or(0);
    for (i, &w) in weights.iter().enumerate() {
        if u < w {
            return i;
        }
        u -= w;
    }
    last
}
