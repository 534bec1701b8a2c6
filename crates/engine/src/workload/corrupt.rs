//! Image corruptions for "day and night" drift, in plain Rust on pixel slices so they are
//! identical on every machine: contrast, brightness, Gaussian blur, Gaussian noise.

use apparate_controller::rng::SplitMix64;
use serde::Deserialize;

/// What happens to every image of a segment, applied in field order; pixels are clamped
/// to [0, 1] at the end.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Corruption {
    /// Scales each pixel's distance from the image's mean (1 = unchanged, 0 = flat grey).
    pub contrast: f64,
    /// Added to every pixel (negative = darker), in [-1, 1].
    pub brightness: f64,
    /// Standard deviation of a Gaussian blur, in pixels (0 = none).
    pub blur_sigma_px: f64,
    /// Standard deviation of additive Gaussian noise, in pixel units (0 = none).
    pub noise_sigma: f64,
}

impl Default for Corruption {
    fn default() -> Self {
        Self {
            contrast: 1.0,
            brightness: 0.0,
            blur_sigma_px: 0.0,
            noise_sigma: 0.0,
        }
    }
}

impl Corruption {
    /// Checks every field; the error names the field and says why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let checks = [
            ("contrast", self.contrast, 0.0, 4.0),
            ("brightness", self.brightness, -1.0, 1.0),
            ("blur_sigma_px", self.blur_sigma_px, 0.0, 5.0),
            ("noise_sigma", self.noise_sigma, 0.0, 1.0),
        ];
        for (field, value, lo, hi) in checks {
            if !(value.is_finite() && (lo..=hi).contains(&value)) {
                return Err((field, format!("{value} is not in [{lo}, {hi}]")));
            }
        }
        Ok(())
    }

    /// The corruption a share `t` (0…1) of the way from `self` to `to`.
    pub fn lerp(&self, to: &Self, t: f64) -> Self {
        let mix = |a: f64, b: f64| a + (b - a) * t;
        Self {
            contrast: mix(self.contrast, to.contrast),
            brightness: mix(self.brightness, to.brightness),
            blur_sigma_px: mix(self.blur_sigma_px, to.blur_sigma_px),
            noise_sigma: mix(self.noise_sigma, to.noise_sigma),
        }
    }

    /// True when applying it changes nothing.
    pub fn is_identity(&self) -> bool {
        *self == Self::default()
    }
}

/// Applies `c` to a `side × side` grey image in place; noise comes from `rng`.
pub fn corrupt_image(pixels: &mut [f32], side: usize, c: &Corruption, rng: &mut SplitMix64) {
    debug_assert_eq!(pixels.len(), side * side);
    if c.is_identity() {
        return;
    }
    if c.contrast != 1.0 {
        let mean = pixels.iter().map(|&p| f64::from(p)).sum::<f64>() / pixels.len() as f64;
        for p in pixels.iter_mut() {
            *p = (mean + (f64::from(*p) - mean) * c.contrast) as f32;
        }
    }
    if c.brightness != 0.0 {
        for p in pixels.iter_mut() {
            *p = (f64::from(*p) + c.brightness) as f32;
        }
    }
    if c.blur_sigma_px > 0.0 {
        blur(pixels, side, c.blur_sigma_px);
    }
    if c.noise_sigma > 0.0 {
        for p in pixels.iter_mut() {
            *p = (f64::from(*p) + c.noise_sigma * gaussian(rng)) as f32;
        }
    }
    for p in pixels.iter_mut() {
        *p = p.clamp(0.0, 1.0);
    }
}

/// Separable Gaussian blur, radius ⌈3σ⌉, edges clamped.
fn blur(pixels: &mut [f32], side: usize, sigma: f64) {
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f64> = (-radius..=radius)
        .map(|d| (-((d * d) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let norm: f64 = kernel.iter().sum();
    let at = |i: isize| i.clamp(0, side as isize - 1) as usize;
    let mut tmp = vec![0f32; pixels.len()];
    for y in 0..side {
        for x in 0..side {
            let s: f64 = kernel
                .iter()
                .zip(-radius..=radius)
                .map(|(k, d)| k * f64::from(pixels[y * side + at(x as isize + d)]))
                .sum();
            tmp[y * side + x] = (s / norm) as f32;
        }
    }
    for y in 0..side {
        for x in 0..side {
            let s: f64 = kernel
                .iter()
                .zip(-radius..=radius)
                .map(|(k, d)| k * f64::from(tmp[at(y as isize + d) * side + x]))
                .sum();
            pixels[y * side + x] = (s / norm) as f32;
        }
    }
}

/// A standard normal draw (Box–Muller, one of the pair).
fn gaussian(rng: &mut SplitMix64) -> f64 {
    let (u, v) = (rng.unit(), rng.unit());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Vec<f32> {
        (0..16)
            .map(|i| if i % 5 == 0 { 0.9 } else { 0.1 })
            .collect()
    }

    #[test]
    fn identity_changes_nothing() {
        let mut px = image();
        corrupt_image(&mut px, 4, &Corruption::default(), &mut SplitMix64::new(1));
        assert_eq!(px, image());
    }

    #[test]
    fn contrast_and_brightness_move_pixels_as_documented() {
        let mut px = image();
        let c = Corruption {
            contrast: 0.0,
            brightness: -0.05,
            ..Corruption::default()
        };
        corrupt_image(&mut px, 4, &c, &mut SplitMix64::new(1));
        let mean = image().iter().sum::<f32>() / 16.0;
        assert!(
            px.iter().all(|&p| (p - (mean - 0.05)).abs() < 1e-6),
            "{px:?}"
        );
    }

    #[test]
    fn blur_keeps_mass_and_smooths() {
        let mut px = vec![0.0f32; 49];
        px[24] = 1.0;
        let c = Corruption {
            blur_sigma_px: 1.0,
            ..Corruption::default()
        };
        corrupt_image(&mut px, 7, &c, &mut SplitMix64::new(1));
        let sum: f32 = px.iter().sum();
        assert!((sum - 1.0).abs() < 1e-3, "{sum}");
        assert!(px[24] < 0.5 && px[23] > 0.0 && px[23] == px[25]);
    }

    #[test]
    fn noise_is_seeded_and_has_the_asked_spread() {
        let c = Corruption {
            noise_sigma: 0.1,
            ..Corruption::default()
        };
        let run = |seed| {
            let mut px = vec![0.5f32; 4096];
            corrupt_image(&mut px, 64, &c, &mut SplitMix64::new(seed));
            px
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
        let px = run(3);
        let var = px.iter().map(|&p| f64::from(p - 0.5).powi(2)).sum::<f64>() / 4096.0;
        assert!((var.sqrt() - 0.1).abs() < 0.01, "{}", var.sqrt());
    }

    #[test]
    fn validation_names_the_field() {
        let c = Corruption {
            noise_sigma: -0.1,
            ..Corruption::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "noise_sigma");
    }
}
