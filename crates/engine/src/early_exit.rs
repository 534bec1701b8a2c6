//! An early-exit model: backbone + ramps, with the serving forward pass that hands
//! back every active ramp's answer as soon as that ramp has run.

use tch::{Device, Tensor, nn};

use crate::model::{Backbone, CnnSpec, CutPoint, HeadOutput, Ramp, build_cnn, build_ramps};

/// How to rebuild the backbone from its weights.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Architecture {
    Cnn(CnnSpec),
}

/// A backbone with a ramp at every candidate cut point. Backbone and ramps live in
/// separate variable stores so either can be trained while the other stays frozen.
#[derive(Debug)]
pub struct EarlyExitModel {
    pub architecture: Architecture,
    pub(crate) backbone_vs: nn::VarStore,
    pub(crate) ramps_vs: nn::VarStore,
    pub(crate) backbone: Box<dyn Backbone>,
    pub(crate) ramps: Vec<Ramp>,
}

impl EarlyExitModel {
    /// A freshly initialised model on `device`.
    pub fn new(architecture: Architecture, device: Device) -> Self {
        let backbone_vs = nn::VarStore::new(device);
        let ramps_vs = nn::VarStore::new(device);
        let (backbone, grid, classes) = match &architecture {
            Architecture::Cnn(spec) => (
                build_cnn(&(backbone_vs.root() / "backbone"), spec),
                spec.ramp_grid,
                spec.classes,
            ),
        };
        let ramps = build_ramps(&(ramps_vs.root() / "ramps"), backbone.cuts(), grid, classes);
        Self {
            architecture,
            backbone_vs,
            ramps_vs,
            backbone,
            ramps,
        }
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.backbone_vs.device()
    }

    /// Candidate cut points (= ramp ids), shallowest first.
    pub fn cuts(&self) -> &[CutPoint] {
        self.backbone.cuts()
    }

    /// The original model's logits (no ramps), in inference mode.
    pub fn forward_final(&self, x: &Tensor, mask: Option<&Tensor>) -> Tensor {
        let _guard = tch::no_grad_guard();
        let h = self.walk(x, mask, |_, _| {});
        self.backbone.head(&h, mask, false)
    }

    /// The original model's logits in training mode (batch statistics, autograd on):
    /// the one path backbone training takes.
    pub(crate) fn forward_train(&self, x: &Tensor) -> Tensor {
        let h = self.walk_mode(x, None, true, |_, _| {});
        self.backbone.head(&h, None, true)
    }

    /// Runs the backbone stage by stage in inference mode (grad tracking is up to the
    /// caller's guard) and calls `at_cut(i, activation)` after the stage that ends at
    /// cut point `i`. Returns the last stage's output, the final head's input.
    pub(crate) fn walk(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        at_cut: impl FnMut(usize, &Tensor),
    ) -> Tensor {
        self.walk_mode(x, mask, false, at_cut)
    }

    /// `walk` in inference (`train = false`) or training mode.
    fn walk_mode(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
        mut at_cut: impl FnMut(usize, &Tensor),
    ) -> Tensor {
        let mut h = x.to_device(self.device());
        let cuts = self.cuts().len();
        for i in 0..=cuts {
            h = self.backbone.stage(i, &h, mask, train);
            if i < cuts {
                at_cut(i, &h);
            }
        }
        h
    }

    /// The serving forward pass. Runs the backbone stage by stage; after each stage
    /// whose cut point is in `active` (ramp ids, any order), evaluates that ramp and
    /// calls `on_ramp(ramp_id, output)` at once, so the caller can release answers
    /// while the batch continues. Returns the final layer's output, which equals a
    /// plain forward pass of the original model.
    pub fn forward_exits(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        active: &[u32],
        mut on_ramp: impl FnMut(u32, HeadOutput),
    ) -> HeadOutput {
        let _guard = tch::no_grad_guard();
        let h = self.walk(x, mask, |i, h| {
            let id = u32::try_from(i).expect("few cuts");
            if active.contains(&id) {
                on_ramp(id, HeadOutput::from_logits(&self.ramps[i].forward(h, mask)));
            }
        });
        HeadOutput::from_logits(&self.backbone.head(&h, mask, false))
    }

    /// Runs the backbone only up to cut point `ramp` and evaluates that ramp: what
    /// the first answer of a batch costs when `ramp` is the shallowest active one.
    /// `None` when `ramp` is not a candidate.
    pub fn forward_until(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        ramp: u32,
    ) -> Option<HeadOutput> {
        let i = usize::try_from(ramp).ok()?;
        let head = self.ramps.get(i)?;
        let _guard = tch::no_grad_guard();
        let mut h = x.to_device(self.device());
        for stage in 0..=i {
            h = self.backbone.stage(stage, &h, mask, false);
        }
        Some(HeadOutput::from_logits(&head.forward(&h, mask)))
    }

    /// Every candidate ramp's logits and the final logits, in inference mode: the
    /// input of ramp evaluation and trace recording.
    pub fn forward_all_ramps(&self, x: &Tensor, mask: Option<&Tensor>) -> (Vec<Tensor>, Tensor) {
        let _guard = tch::no_grad_guard();
        let mut ramp_logits = Vec::with_capacity(self.cuts().len());
        let h = self.walk(x, mask, |i, h| {
            ramp_logits.push(self.ramps[i].forward(h, mask))
        });
        (ramp_logits, self.backbone.head(&h, mask, false))
    }

    /// All weights, backbone and ramps, by name (`backbone.…`, `ramps.…`).
    pub fn named_weights(&self) -> Vec<(String, Tensor)> {
        let mut all: Vec<_> = self
            .backbone_vs
            .variables()
            .into_iter()
            .chain(self.ramps_vs.variables())
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}
