//! The `apparate.v1` protocol between clients, model servers and the sidecar
//! controller, generated from `proto/apparate/v1/*.proto`.
//!
//! `docs/protocol.md` is the normative description; this crate only carries
//! the generated types, clients and servers, plus the encoded file descriptor
//! set for gRPC reflection.

/// Generated messages, clients (`*_client`) and servers (`*_server`).
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod v1 {
    tonic::include_proto!("apparate.v1");
}

/// Encoded `FileDescriptorSet` of every `apparate.v1` file, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("apparate_descriptor");

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::v1;

    #[test]
    fn descriptor_set_names_both_services() {
        let text = String::from_utf8_lossy(super::FILE_DESCRIPTOR_SET);
        for name in ["Inference", "Control", "StreamConfig", "StreamFeedback"] {
            assert!(text.contains(name), "descriptor set lacks {name}");
        }
    }

    #[test]
    fn unset_ramp_means_final_layer_on_the_wire() {
        let reply = v1::InferReply {
            label: 3,
            ramp_id: None,
            ..Default::default()
        };
        let back = v1::InferReply::decode(reply.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.ramp_id, None);
        let early = v1::InferReply {
            ramp_id: Some(0),
            ..reply
        };
        let back = v1::InferReply::decode(early.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            back.ramp_id,
            Some(0),
            "ramp 0 must survive proto3 default elision"
        );
    }
}
