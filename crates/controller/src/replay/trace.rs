//! Recorded traces: every candidate ramp's output for every request, plus the final label.
//! The on-disk form is JSON Lines, one request per line (see `docs/trace-format.md`).

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::error::{ControllerError, Result};
use crate::record::{FeedbackRecord, RampObservation, RampOutput};

/// A recorded workload: what every candidate ramp said about every request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trace {
    /// Requests in arrival order.
    pub requests: Vec<TraceRequest>,
}

/// One recorded request.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRequest {
    /// Request id (informational).
    pub request_id: u64,
    /// Batch size it was served in; selects the profile column.
    pub batch_size: u32,
    /// The original model's prediction.
    pub final_label: u32,
    /// Output of every candidate ramp; index = ramp id.
    pub ramps: Vec<RampOutput>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    request_id: u64,
    batch_size: u32,
    final_label: u32,
    ramps: Vec<LineRamp>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineRamp {
    id: u32,
    label: u32,
    confidence: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entropy: Option<f32>,
}

impl TraceRequest {
    /// The feedback a server would send for this request when only `active` ramps run.
    pub fn feedback(&self, active: &[u32], queue_us: u64, exec_us: u64) -> FeedbackRecord {
        FeedbackRecord {
            request_id: self.request_id,
            ramps: active
                .iter()
                .filter_map(|&id| {
                    self.ramps.get(id as usize).map(|&output| RampObservation {
                        ramp_id: id,
                        output,
                    })
                })
                .collect(),
            final_label: self.final_label,
            batch_size: self.batch_size,
            queue_us,
            exec_us,
        }
    }
}

impl Trace {
    /// Requests in the trace.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// True for an empty trace.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Number of candidate ramps (every request carries the same number).
    pub fn candidate_count(&self) -> usize {
        self.requests.first().map_or(0, |r| r.ramps.len())
    }

    /// Reads JSON Lines; blank lines are skipped. Errors name the 1-based line.
    pub fn read_jsonl(reader: impl BufRead) -> Result<Self> {
        let mut requests = Vec::new();
        for (idx, line) in reader.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let err = |message: String| ControllerError::Trace {
                line: idx + 1,
                message,
            };
            let parsed: Line = serde_json::from_str(&line).map_err(|e| err(e.to_string()))?;
            let req = to_request(parsed).map_err(err)?;
            if let Some(first) = requests.first().map(|r: &TraceRequest| r.ramps.len())
                && first != req.ramps.len()
            {
                return Err(err(format!(
                    "has {} ramps, earlier lines have {first}",
                    req.ramps.len()
                )));
            }
            requests.push(req);
        }
        Ok(Self { requests })
    }

    /// Parses JSON Lines from a string.
    pub fn from_jsonl_str(text: &str) -> Result<Self> {
        Self::read_jsonl(text.as_bytes())
    }

    /// Writes JSON Lines, one request per line.
    pub fn write_jsonl(&self, mut writer: impl Write) -> Result<()> {
        for req in &self.requests {
            let line = Line {
                request_id: req.request_id,
                batch_size: req.batch_size,
                final_label: req.final_label,
                ramps: req
                    .ramps
                    .iter()
                    .enumerate()
                    .map(|(id, o)| LineRamp {
                        id: id as u32,
                        label: o.label,
                        confidence: o.confidence,
                        entropy: o.entropy.is_finite().then_some(o.entropy),
                    })
                    .collect(),
            };
            serde_json::to_writer(&mut writer, &line)?;
            writer.write_all(b"\n")?;
        }
        writer.flush()?;
        Ok(())
    }

    /// Renders the trace as JSON Lines.
    pub fn to_jsonl_string(&self) -> Result<String> {
        let mut out = Vec::new();
        self.write_jsonl(&mut out)?;
        String::from_utf8(out).map_err(|e| ControllerError::Trace {
            line: 0,
            message: e.to_string(),
        })
    }
}

fn to_request(line: Line) -> std::result::Result<TraceRequest, String> {
    let mut ramps: Vec<Option<RampOutput>> = vec![None; line.ramps.len()];
    for r in line.ramps {
        if !(r.confidence.is_finite() && (0.0..=1.0).contains(&r.confidence)) {
            return Err(format!(
                "ramp {} confidence {} is not in [0, 1]",
                r.id, r.confidence
            ));
        }
        let slot = ramps
            .get_mut(r.id as usize)
            .ok_or_else(|| format!("ramp id {} out of range: ids must be 0..n", r.id))?;
        if slot.is_some() {
            return Err(format!("ramp id {} appears twice", r.id));
        }
        *slot = Some(RampOutput {
            label: r.label,
            confidence: r.confidence,
            entropy: r.entropy.unwrap_or(f32::NAN),
        });
    }
    if line.batch_size == 0 {
        return Err("batch_size must be positive".into());
    }
    Ok(TraceRequest {
        request_id: line.request_id,
        batch_size: line.batch_size,
        final_label: line.final_label,
        // Every slot is filled: n distinct ids in 0..n.
        ramps: ramps.into_iter().flatten().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"request_id":7,"batch_size":8,"final_label":3,"ramps":[{"id":1,"label":3,"confidence":0.97},{"id":0,"label":5,"confidence":0.41,"entropy":1.2}]}

{"request_id":8,"batch_size":8,"final_label":1,"ramps":[{"id":0,"label":1,"confidence":0.88,"entropy":0.4},{"id":1,"label":1,"confidence":0.99,"entropy":0.05}]}
"#;

    #[test]
    fn reads_out_of_order_ids_and_round_trips() {
        let trace = Trace::from_jsonl_str(SAMPLE).unwrap();
        assert_eq!(trace.len(), 2);
        assert_eq!(trace.requests[0].ramps[1].confidence, 0.97);
        assert!(trace.requests[0].ramps[1].entropy.is_nan());
        let again = Trace::from_jsonl_str(&trace.to_jsonl_string().unwrap()).unwrap();
        assert_eq!(again.requests[1], trace.requests[1]);
        assert_eq!(again.requests[0].ramps[0], trace.requests[0].ramps[0]);
    }

    #[test]
    fn errors_name_the_line() {
        let bad = "{\"request_id\":1,\"batch_size\":1,\"final_label\":0,\"ramps\":[{\"id\":0,\"label\":0,\"confidence\":0.5}]}\n{\"request_id\":2,\"batch_size\":1,\"final_label\":0,\"ramps\":[{\"id\":2,\"label\":0,\"confidence\":0.5}]}\n";
        let err = Trace::from_jsonl_str(bad).unwrap_err().to_string();
        assert!(err.starts_with("trace line 2"), "{err}");
        let err = Trace::from_jsonl_str("{\"request_id\":1}\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("trace line 1"), "{err}");
    }
}
