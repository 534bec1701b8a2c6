//! libtorch is really linked and computes: a tiny forward pass checked by hand.

use apparate_engine::device::{DeviceChoice, describe, set_threads};
use tch::{Device, Kind, Tensor, nn, nn::Module};

#[test]
fn linear_forward_pass_matches_hand_computation() {
    set_threads(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut layer = nn::linear(vs.root() / "fc", 3, 2, Default::default());
    tch::no_grad(|| {
        layer
            .ws
            .copy_(&Tensor::from_slice(&[1.0f32, 2.0, 3.0, -1.0, 0.5, 0.0]).view([2, 3]));
        layer
            .bs
            .as_mut()
            .expect("bias")
            .copy_(&Tensor::from_slice(&[0.5f32, -0.5]));
    });
    let x = Tensor::from_slice(&[1.0f32, 1.0, 1.0, 2.0, 0.0, -1.0]).view([2, 3]);
    let y = tch::no_grad(|| layer.forward(&x));
    assert_eq!(y.size(), [2, 2]);
    let got: Vec<f32> = y.view([-1]).try_into().expect("float tensor");
    // Row 1: [1+2+3+0.5, -1+0.5+0-0.5]; row 2: [2-3+0.5, -2+0-0.5].
    assert_eq!(got, [6.5, -1.0, -0.5, -2.5]);
    assert_eq!(y.kind(), Kind::Float);
}

#[test]
fn auto_device_is_cuda_exactly_when_libtorch_sees_a_gpu() {
    let device = DeviceChoice::Auto.resolve();
    assert_eq!(
        device.is_cuda(),
        tch::Cuda::is_available(),
        "{}",
        describe(device)
    );
    // The same small computation runs on whatever device was picked.
    let x = Tensor::ones([4, 4], (Kind::Float, device));
    let sum = x.matmul(&x).sum(Kind::Float).double_value(&[]);
    assert_eq!(sum, 64.0);
}

#[test]
fn device_choice_parses_what_the_cli_accepts() {
    assert_eq!(DeviceChoice::parse("auto"), Some(DeviceChoice::Auto));
    assert_eq!(DeviceChoice::parse("cpu"), Some(DeviceChoice::Cpu));
    assert_eq!(DeviceChoice::parse("cuda"), Some(DeviceChoice::Cuda(0)));
    assert_eq!(DeviceChoice::parse("cuda:1"), Some(DeviceChoice::Cuda(1)));
    assert_eq!(DeviceChoice::parse("gpu"), None);
    assert_eq!(DeviceChoice::parse("cuda:x"), None);
}
