//! A participant's shared screen: a pipeline around `webrtcbin` that only
//! receives video, decoded into a compositor input of the room mixer.
//!
//! ```text
//!            ┌──────── webrtcbin ────────┐
//!            │ m-line 0: audio, inactive │
//!            │ m-line 1: video, recvonly │ src (VP8/H.264) ─► decoder ─ videocrop ─ videoscale(letterbox) ─ label ─ appsink ─► compositor input
//!            └───────────────────────────┘
//! ```
//!
//! The offer has the two m-lines of every offer (protocol.md), so a client
//! answers it as it answers a participant's; nothing is sent back. The
//! share's tile is always letterboxed: the whole screen shows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use gst::prelude::*;

use super::mixer::{RoomMixer, TileElements};
use super::participant::{accept_every_offered_codec, connect_incoming, drop_unwanted_rtp, on_peer_event, Activity};
use super::webrtc::{element, Peer};
use super::{offered_video_caps, opus_rtp_caps, shutdown_pipeline, unstamped};
use crate::room::{EventSender, ParticipantMedia};

pub struct SharePipeline {
    id: String,
    activity: Arc<Activity>,
    pipeline: gst::Pipeline,
    peer: Peer,
    mixer: Arc<RoomMixer>,
}

impl SharePipeline {
    pub fn new(id: &str, mixer: Arc<RoomMixer>, events: EventSender) -> Result<SharePipeline> {
        let cfg = mixer.config().clone();
        let desc = format!(
            "webrtcbin name=webrtc bundle-policy=max-bundle latency={jb} {tile}",
            jb = cfg.jitterbuffer_ms,
            tile = super::mixer::tile_chain(),
        );
        let pipeline = gst::parse::launch(&desc)
            .context("share pipeline does not parse")?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow::anyhow!("share pipeline is not a pipeline"))?;
        pipeline.set_property("name", format!("share-{id}"));
        let ready = Arc::new(AtomicBool::new(false));
        let peer = Peer::new(&pipeline, cfg.dtls_certificate()?, &cfg.network, on_peer_event(id, &mixer, &ready, &events))?;
        let webrtcbin = peer.webrtcbin().clone();
        accept_every_offered_codec(&webrtcbin);
        drop_unwanted_rtp(&pipeline);
        use gst_webrtc::WebRTCRTPTransceiverDirection as Dir;
        for (dir, caps) in [(Dir::Inactive, opus_rtp_caps()), (Dir::Recvonly, offered_video_caps())] {
            let _: gst_webrtc::WebRTCRTPTransceiver = webrtcbin.emit_by_name("add-transceiver", &[&dir, &caps]);
        }
        let tile_el = TileElements::in_pipeline(&pipeline)?;
        let (room_in, flags) = mixer.add_share(id, tile_el)?;
        let p = SharePipeline { id: id.to_string(), activity: Activity::new(true), pipeline: pipeline.clone(), peer, mixer: mixer.clone() };
        // From here on, an early return drops `p`, which takes the input
        // out of the mixer and stops the pipeline.
        let vsink: gst_app::AppSink = element(&pipeline, "vsink")?;
        vsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let Some(buffer) = sample.buffer_owned() else { return Ok(gst::FlowSuccess::Ok) };
                    if let Some(caps) = sample.caps() {
                        if room_in.caps().as_ref().map(|c| c.as_ref()) != Some(caps) {
                            room_in.set_caps(Some(&caps.to_owned()));
                        }
                    }
                    flags.has_video.store(true, Ordering::Relaxed);
                    let _ = room_in.push_buffer(unstamped(&buffer));
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        // Audio is inactive in the offer; any that came would find no
        // converter and be dropped.
        connect_incoming(&p.peer, &p.id, &p.activity);
        p.peer.play(std::time::Duration::from_secs(2))?;
        p.peer.offer();
        Ok(p)
    }
}

impl ParticipantMedia for SharePipeline {
    fn apply_answer(&self, sdp: &str) {
        if !crate::protocol::answer_sends_media(sdp) {
            self.activity.sends.store(false, Ordering::Relaxed);
        }
        self.peer.apply_answer(sdp);
    }

    fn add_ice(&self, sdp_mline_index: u32, candidate: &str) {
        self.peer.add_ice(sdp_mline_index, candidate);
    }

    fn media_silence(&self, now: std::time::Instant) -> Option<std::time::Duration> {
        self.activity.silence(now)
    }
}

impl Drop for SharePipeline {
    fn drop(&mut self) {
        self.mixer.remove_participant(&self.id);
        shutdown_pipeline(&self.pipeline);
    }
}
