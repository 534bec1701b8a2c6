//! Where forward passes run, and with how many threads.

use tch::Device;

/// Which device to serve and train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The first CUDA GPU when libtorch sees one, else the CPU.
    #[default]
    Auto,
    /// Always the CPU.
    Cpu,
    /// CUDA GPU number `n`.
    Cuda(usize),
}

impl DeviceChoice {
    /// Parses `auto`, `cpu`, `cuda` or `cuda:N`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(Self::Auto),
            "cpu" => Some(Self::Cpu),
            "cuda" => Some(Self::Cuda(0)),
            _ => text.strip_prefix("cuda:")?.parse().ok().map(Self::Cuda),
        }
    }

    /// The libtorch device this choice resolves to on this machine.
    pub fn resolve(self) -> Device {
        match self {
            Self::Auto => Device::cuda_if_available(),
            Self::Cpu => Device::Cpu,
            Self::Cuda(n) => Device::Cuda(n),
        }
    }
}

/// How a bundle's manifest names the device it was profiled on: `cpu`, `cuda(0)`.
pub fn device_label(device: Device) -> String {
    format!("{device:?}").to_lowercase()
}

/// Sets libtorch's intra-op thread count explicitly (0 = one per available core),
/// so a serving worker does not oversubscribe cores shared with the async runtime.
/// Returns the count in force.
pub fn set_threads(threads: usize) -> usize {
    let n = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    tch::set_num_threads(i32::try_from(n).unwrap_or(i32::MAX));
    n
}

/// One line for logs: device, GPU count and libtorch's thread count.
pub fn describe(device: Device) -> String {
    let name = match device {
        Device::Cpu => "cpu".to_owned(),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}").to_lowercase(),
    };
    format!(
        "device {name} (CUDA GPUs visible: {}, libtorch threads: {})",
        tch::Cuda::device_count(),
        tch::get_num_threads()
    )
}
