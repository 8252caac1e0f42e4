//! A participant whose media travels on our own transport
//! ([`super::rtc`], str0m) instead of webrtcbin (`[media] transport =
//! "str0m"`). Work in progress: VP8 and Opus participants; viewers, shares
//! and H.264 stay on webrtcbin, and there are no link statistics yet.
//!
//! ```text
//! rung frames ─► vsrc ─► vout (appsink) ─► RtcPeer::send_video ─┐
//! mix packets ─► asrc ─► aout (appsink) ─► RtcPeer::send_audio ─┤ one UDP socket,
//!                                                               │ str0m packetizes,
//! RtcEvent::Media (VP8 frame) ─► vin ─► vp8dec ─► tile chain ◄──┤ protects, paces,
//! RtcEvent::Media (Opus)      ─► ain ─► opusdec ─► asink ◄──────┘ repairs
//! ```
//!
//! The appsrc/appsink pairs keep the room's side as it is for webrtcbin
//! participants (the room pushes into `vsrc` and `asrc`); they carry frames,
//! not packets, so their hand-over costs 30 + 50 wake-ups a second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use gst::prelude::*;
use str0m::media::MediaKind;

use super::audio::audio_caps;
use super::mixer::{RoomMixer, TileElements};
use super::participant::{connect_decoded_outputs, Activity};
use super::rtc::{RtcEvent, RtcPeer};
use super::webrtc::element;
use super::shutdown_pipeline;
use crate::protocol::Codec;
use crate::room::{EventSender, JoinOptions, MediaEvent, ParticipantEvent, ParticipantMedia};

pub struct DirectParticipant {
    id: String,
    activity: Arc<Activity>,
    pipeline: gst::Pipeline,
    peer: Arc<RtcPeer>,
    mixer: Arc<RoomMixer>,
    ready: Arc<AtomicBool>,
}

fn send(events: &EventSender, ev: MediaEvent) {
    if events.try_send(ParticipantEvent::Media(ev)).is_err() {
        tracing::warn!("participant event queue full or closed; event dropped");
    }
}

impl DirectParticipant {
    pub fn new(id: &str, mixer: Arc<RoomMixer>, opts: &JoinOptions, events: EventSender) -> Result<DirectParticipant> {
        let cfg = mixer.config().clone();
        let choice = mixer.delivery().choice_of(&opts.quality).with_context(|| format!("no rung `{}`", opts.quality))?;
        let address: std::net::IpAddr = cfg
            .network
            .ice_addresses
            .first()
            .context("the str0m transport needs an ICE address ([network] ice_addresses)")?
            .parse()
            .context("[network] ice_addresses holds something that is not an IP address")?;
        let desc = format!(
            "appsrc name=vsrc is-live=true do-timestamp=true format=time max-bytes=2000000 ! appsink name=vout sync=false async=false \
             appsrc name=asrc is-live=true do-timestamp=false format=time max-bytes=96000 ! appsink name=aout sync=false async=false \
             appsrc name=vin is-live=true do-timestamp=true format=time max-bytes=4000000 ! vp8dec ! {tile} \
             appsrc name=ain is-live=true do-timestamp=true format=time max-bytes=96000 ! opusdec plc=true \
               ! audioconvert name=aconv ! audioresample ! capsfilter name=amixcaps ! appsink name=asink sync=false async=false",
            tile = super::mixer::tile_chain()
        );
        let pipeline = gst::parse::launch(&desc)
            .context("direct participant pipeline does not parse")?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow::anyhow!("direct participant pipeline is not a pipeline"))?;
        pipeline.set_property("name", format!("participant-{id}"));
        let by = |n: &str| pipeline.by_name(n).with_context(|| format!("{n} missing"));
        by("amixcaps")?.set_property("caps", audio_caps());
        let vin: gst_app::AppSrc = element(&pipeline, "vin")?;
        vin.set_caps(Some(&gst::Caps::builder("video/x-vp8").build()));
        let ain: gst_app::AppSrc = element(&pipeline, "ain")?;
        ain.set_caps(Some(&gst::Caps::builder("audio/x-opus").field("channel-mapping-family", 0).field("channels", 2).field("rate", 48000).build()));
        let vsrc: gst_app::AppSrc = element(&pipeline, "vsrc")?;
        vsrc.set_property_from_str("leaky-type", "downstream");
        vsrc.set_caps(Some(&super::encoded_video_caps(Codec::Vp8)));
        let asrc: gst_app::AppSrc = element(&pipeline, "asrc")?;
        asrc.set_property_from_str("leaky-type", "downstream");

        let ready = Arc::new(AtomicBool::new(false));
        let activity = Activity::new(true);
        let on_event = {
            let (id, mixer, ready, events, activity) = (id.to_string(), Arc::downgrade(&mixer), ready.clone(), events.clone(), activity.clone());
            let (vin, ain) = (vin.downgrade(), ain.downgrade());
            let peer_slot: Arc<parking_lot::Mutex<Option<std::sync::Weak<RtcPeer>>>> = Default::default();
            let slot = peer_slot.clone();
            let f: super::rtc::OnRtcEvent = Arc::new(move |ev| match ev {
                RtcEvent::Connected => {
                    ready.store(true, Ordering::SeqCst);
                    if let Some(m) = mixer.upgrade() {
                        m.request_keyframe(&id);
                    }
                    // And the sender's first keyframe, to decode from.
                    if let Some(p) = slot.lock().as_ref().and_then(|w| w.upgrade()) {
                        p.ask_keyframe();
                    }
                }
                RtcEvent::Failed(reason) => send(&events, MediaEvent::Failed { reason }),
                RtcEvent::AnswerApplied => send(&events, MediaEvent::AnswerApplied),
                RtcEvent::AnswerRefused(reason) => send(&events, MediaEvent::AnswerRefused { reason }),
                RtcEvent::Media { kind, data, .. } => {
                    activity.heard(std::time::Instant::now());
                    let src = if kind == MediaKind::Video { vin.upgrade() } else { ain.upgrade() };
                    if let Some(src) = src {
                        let _ = src.push_buffer(gst::Buffer::from_mut_slice(data));
                    }
                }
                RtcEvent::KeyframeRequested => {
                    if let Some(m) = mixer.upgrade() {
                        m.request_keyframe(&id);
                    }
                }
                RtcEvent::Estimate(_) => {}
            });
            (f, peer_slot)
        };
        let ports = cfg.network.udp_ports.map(|r| (r.min, r.max));
        let peer = Arc::new(RtcPeer::offer(address, ports, &cfg.dtls_certificate()?, on_event.0)?);
        *on_event.1.lock() = Some(Arc::downgrade(&peer));

        let tile_el = TileElements::in_pipeline(&pipeline)?;
        let handles = mixer.add_participant(id, tile_el, vsrc.clone(), asrc.clone(), ready.clone(), events.clone(), choice)?;
        mixer.delivery().set_codec(id, Codec::Vp8);
        let p = DirectParticipant { id: id.to_string(), activity, pipeline: pipeline.clone(), peer: peer.clone(), mixer: mixer.clone(), ready };
        // From here on, an early return drops `p`, which removes the
        // participant from the mixer and stops the pipeline.
        connect_decoded_outputs(&pipeline, handles, None)?;
        forward(&pipeline, "vout", &peer, 90_000)?;
        forward(&pipeline, "aout", &peer, 48_000)?;
        pipeline.set_state(gst::State::Playing).context("the direct participant's pipeline refused to play")?;
        send(&events, MediaEvent::Offer { sdp: crate::protocol::with_audio_ptime(peer.sdp(), cfg.audio_ptime_ms) });
        Ok(p)
    }
}

/// What reaches appsink `name` goes to `peer`, stamped in a `rate` Hz clock
/// from its running time.
fn forward(pipeline: &gst::Pipeline, name: &str, peer: &Arc<RtcPeer>, rate: u64) -> Result<()> {
    let sink: gst_app::AppSink = element(pipeline, name)?;
    let peer = Arc::downgrade(peer);
    let video = rate == 90_000;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let (Some(buffer), Some(peer)) = (sample.buffer(), peer.upgrade()) else { return Ok(gst::FlowSuccess::Ok) };
                let Ok(map) = buffer.map_readable() else { return Ok(gst::FlowSuccess::Ok) };
                let time = buffer.pts().map(|t| t.nseconds()).unwrap_or(0) as u128 * rate as u128 / 1_000_000_000;
                if video {
                    peer.send_video(map.to_vec(), time as u64);
                } else {
                    peer.send_audio(map.to_vec(), time as u64);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(())
}

impl ParticipantMedia for DirectParticipant {
    fn apply_answer(&self, sdp: &str) {
        if !crate::protocol::answer_sends_media(sdp) {
            self.activity.sends.store(false, Ordering::Relaxed);
        }
        self.peer.apply_answer(sdp);
    }

    fn add_ice(&self, _sdp_mline_index: u32, candidate: &str) {
        self.peer.add_ice(candidate);
    }

    fn set_quality(&self, quality: &str) {
        if let Some(choice) = self.mixer.delivery().choice_of(quality) {
            self.mixer.delivery().set_choice(&self.id, choice);
        }
    }

    fn media_silence(&self, now: std::time::Instant) -> Option<std::time::Duration> {
        self.activity.silence(now)
    }
}

impl Drop for DirectParticipant {
    fn drop(&mut self) {
        self.ready.store(false, Ordering::SeqCst);
        self.mixer.remove_participant(&self.id);
        shutdown_pipeline(&self.pipeline);
    }
}
