//! The gRPC stubs of `baton.v1.Locks` and `baton.v1.Elections` on a channel, with the
//! client's message size limit.

use tonic::transport::Channel;

use crate::proto::v1::elections_client::ElectionsClient;
use crate::proto::v1::locks_client::LocksClient;

pub(super) fn locks(channel: Channel, max: usize) -> LocksClient<Channel> {
    LocksClient::new(channel)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max)
}

pub(super) fn elections(channel: Channel, max: usize) -> ElectionsClient<Channel> {
    ElectionsClient::new(channel)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max)
}
