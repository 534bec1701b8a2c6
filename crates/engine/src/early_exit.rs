//! An early-exit model: backbone + ramps, with the serving forward pass that hands
//! back every active ramp's answer as soon as that ramp has run.

use std::path::Path;

use tch::{Device, Tensor, nn};

use crate::{
    Result,
    minilm::MiniLm,
    model::{
        Backbone, CnnSpec, CutPoint, EncoderBackbone, Family, HeadOutput, MiniLmSpec, Ramp,
        build_cnn, build_ramps,
    },
};

/// How to rebuild the backbone from its weights.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Architecture {
    /// A CNN trained here; all its weights are in the bundle's safetensors.
    Cnn(CnnSpec),
    /// The pretrained MiniLM encoder (files in the bundle's `encoder/` folder) with a
    /// sentiment head trained here.
    Minilm(MiniLmSpec),
}

impl Architecture {
    /// The model family this architecture belongs to.
    pub fn family(&self) -> Family {
        match self {
            Self::Cnn(spec) => spec.family,
            Self::Minilm(_) => Family::Minilm,
        }
    }

    /// Classes of the final head and of every ramp.
    pub fn classes(&self) -> i64 {
        match self {
            Self::Cnn(spec) => spec.classes,
            Self::Minilm(spec) => spec.classes,
        }
    }
}

/// A backbone, the original model's final head, and a ramp at every candidate cut point.
///
/// `backbone_vs` holds what the original model trains (a CNN's layers and its head; for
/// MiniLM, whose encoder is frozen plain tensors, only the head) and `ramps_vs` the
/// ramps, so either can be trained while the other stays frozen.
#[derive(Debug)]
pub struct EarlyExitModel {
    pub architecture: Architecture,
    pub(crate) backbone_vs: nn::VarStore,
    pub(crate) ramps_vs: nn::VarStore,
    pub(crate) backbone: Box<dyn Backbone>,
    /// The final classifier: a grid-1 ramp (global or masked mean pool → linear).
    pub(crate) head: Ramp,
    pub(crate) ramps: Vec<Ramp>,
}

impl EarlyExitModel {
    /// A freshly initialised CNN with its ramps on `device`.
    pub fn cnn(spec: CnnSpec, device: Device) -> Self {
        let backbone_vs = nn::VarStore::new(device);
        let backbone = build_cnn(&(backbone_vs.root() / "backbone"), &spec);
        let grid = spec.ramp_grid;
        Self::assemble(Architecture::Cnn(spec), backbone_vs, backbone, grid)
    }

    /// The pretrained encoder in `encoder_dir` (`config.json`, `model.safetensors`) with
    /// a fresh head and fresh ramps on `device`.
    pub fn minilm(spec: MiniLmSpec, encoder_dir: &Path, device: Device) -> Result<Self> {
        let encoder = MiniLm::load(encoder_dir, device)?;
        let backbone = Box::new(EncoderBackbone::new(encoder));
        let backbone_vs = nn::VarStore::new(device);
        Ok(Self::assemble(
            Architecture::Minilm(spec),
            backbone_vs,
            backbone,
            1,
        ))
    }

    fn assemble(
        architecture: Architecture,
        backbone_vs: nn::VarStore,
        backbone: Box<dyn Backbone>,
        grid: i64,
    ) -> Self {
        let classes = architecture.classes();
        let ramps_vs = nn::VarStore::new(backbone_vs.device());
        let head = Ramp::global(
            &(backbone_vs.root() / "backbone" / "head"),
            backbone.out_width(),
            classes,
        );
        let ramps = build_ramps(&(ramps_vs.root() / "ramps"), backbone.cuts(), grid, classes);
        Self {
            architecture,
            backbone_vs,
            ramps_vs,
            backbone,
            head,
            ramps,
        }
    }

    /// Refolds every image ramp's pooling into its linear weights ([`Ramp::fold_pool`]):
    /// needed whenever ramp weights change (training, loading), or serving would keep
    /// using the old ones.
    pub(crate) fn fold_ramp_pools(&mut self) {
        for ramp in &mut self.ramps {
            ramp.fold_pool();
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
        let mask = self.on_device(mask);
        let h = self.walk(x, mask.as_ref(), |_, _| {});
        self.head.forward(&h, mask.as_ref())
    }

    /// The original model's logits in training mode (batch statistics, autograd on):
    /// the one path backbone training takes.
    /// `at_cut(i, activation)` sees each cut point's activation (with its graph), for
    /// losses on the ramps.
    pub(crate) fn forward_train(&self, x: &Tensor, at_cut: impl FnMut(usize, &Tensor)) -> Tensor {
        let h = self.walk_mode(x, None, true, at_cut);
        self.head.forward(&h, None)
    }

    /// Pooled features at every cut point (as each ramp pools them) and at the final
    /// head's input, in inference mode: what head and ramp training fit on.
    pub(crate) fn pooled(&self, x: &Tensor, mask: Option<&Tensor>) -> (Vec<Tensor>, Tensor) {
        let _guard = tch::no_grad_guard();
        let mask = self.on_device(mask);
        let mut per_cut = Vec::with_capacity(self.ramps.len());
        let h = self.walk(x, mask.as_ref(), |i, h| {
            per_cut.push(self.ramps[i].pool(h, mask.as_ref()))
        });
        (per_cut, self.head.pool(&h, mask.as_ref()))
    }

    /// The mask on the model's device (a no-op when it is there already).
    fn on_device(&self, mask: Option<&Tensor>) -> Option<Tensor> {
        mask.map(|m| m.to_device(self.device()))
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
        let mask = self.on_device(mask);
        let mask = mask.as_ref();
        let h = self.walk(x, mask, |i, h| {
            let id = u32::try_from(i).expect("few cuts");
            if active.contains(&id) {
                on_ramp(id, HeadOutput::from_logits(&self.ramps[i].forward(h, mask)));
            }
        });
        HeadOutput::from_logits(&self.head.forward(&h, mask))
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
        let mask = self.on_device(mask);
        let mut h = x.to_device(self.device());
        for stage in 0..=i {
            h = self.backbone.stage(stage, &h, mask.as_ref(), false);
        }
        Some(HeadOutput::from_logits(&head.forward(&h, mask.as_ref())))
    }

    /// Every candidate ramp's logits and the final logits, in inference mode: the
    /// input of ramp evaluation and trace recording.
    pub fn forward_all_ramps(&self, x: &Tensor, mask: Option<&Tensor>) -> (Vec<Tensor>, Tensor) {
        let _guard = tch::no_grad_guard();
        let mask = self.on_device(mask);
        let mask = mask.as_ref();
        let mut ramp_logits = Vec::with_capacity(self.cuts().len());
        let h = self.walk(x, mask, |i, h| {
            ramp_logits.push(self.ramps[i].forward(h, mask))
        });
        (ramp_logits, self.head.forward(&h, mask))
    }

    /// All trained weights, by name (`backbone.…` with the final head, `ramps.…`); a
    /// MiniLM's frozen encoder is not among them (bundles copy its file).
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
