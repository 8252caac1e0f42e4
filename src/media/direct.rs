//! A participant whose media travels on our own transport
//! ([`super::rtc`], str0m) instead of webrtcbin (`[media] transport =
//! "str0m"`). Participants in VP8 or H.264 with Opus: sent the answer's
//! first video codec, as on webrtcbin, and decoded in the codec of their
//! first frame; viewers, shares and recorders stay on webrtcbin. Congestion control: the receiver's TWCC
//! feedback goes to its [`LinkStats`] (the rung controller's estimate,
//! delivered rate and loss, as on webrtcbin), and the controller's probes
//! are padded by str0m's pacer ([`Probing`]); the peer's counters
//! ([`super::rtc::PeerCounters`]) give `/stats` its retransmission,
//! keyframe and round-trip figures.
//!
//! ```text
//! rung frames (ladder thread) ─► Outlet::Direct ─► RtcPeer::send_video ─┐
//! mix packets (mixer thread)  ─► Outlet::Direct ─► RtcPeer::send_audio ─┤ its UDP sockets,
//!                                                                       │ str0m packetizes,
//! RtcEvent::Media (video frame) ─► vin ─► decoder ─► tile chain ◄────────┤ protects, paces,
//! RtcEvent::Media (Opus) ─► OpusDecoder ─► mix-minus ring ◄─────────────┘ repairs
//! ```
//!
//! What the room sends goes to the peer's task from the thread that made it
//! (no appsrc, no streaming thread of ours in between); incoming Opus is
//! decoded on the peer's task, straight to 48 kHz mono (no convert, no
//! resample, no thread); only incoming video has a pipeline (decoding and
//! the tile chain).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use anyhow::{Context, Result};
use gst::prelude::*;
use parking_lot::Mutex;
use str0m::media::MediaKind;

use super::audio::AudioPort;
use super::delivery::LinkStats;
use super::mixer::{RoomMixer, TileElements};
use super::opus::OpusDecoder;
use super::participant::{connect_decoded_video, Activity};
use super::rtc::{Addresses, Probing, RtcEvent, RtcPeer};
use super::webrtc::element;
use super::{shutdown_pipeline, Outlet};
use crate::protocol::Codec;
use crate::room::{EventSender, JoinOptions, MediaEvent, ParticipantEvent, ParticipantMedia};

pub struct DirectParticipant {
    id: String,
    activity: Arc<Activity>,
    pipeline: gst::Pipeline,
    peer: Arc<RtcPeer>,
    mixer: Arc<RoomMixer>,
    ready: Arc<AtomicBool>,
    /// The video codec the answer chose (what the peer sends).
    video_codec: Arc<OnceLock<Codec>>,
}

fn send(events: &EventSender, ev: MediaEvent) {
    if events.try_send(ParticipantEvent::Media(ev)).is_err() {
        tracing::warn!("participant event queue full or closed; event dropped");
    }
}

/// The peer, once made (the room's outlets and the peer's callback are made
/// before it).
type PeerSlot = Arc<OnceLock<Weak<RtcPeer>>>;

/// What to do with a sender's video frame.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Decode,
    /// Not decodable (no keyframe since a loss, or none yet); `ask`: ask
    /// the sender for a keyframe now.
    Drop { ask: bool },
}

/// A frame lost for good freezes the sender's tile until its next
/// keyframe, which is asked for at once (a PLI) and again every
/// [`KEYFRAME_REASK`] while none comes, as webrtcbin's depayloader does
/// for the other transport (`webrtc::freeze_on_loss`): decoding on broken
/// references would smear the tile until a keyframe came by chance. Pure:
/// time is a parameter.
#[derive(Debug)]
struct VideoGap {
    /// Waiting for a keyframe (also before the first one).
    waiting: bool,
    asked: Option<std::time::Instant>,
}

/// How long a keyframe asked for is waited for before asking again.
const KEYFRAME_REASK: std::time::Duration = std::time::Duration::from_millis(500);

impl Default for VideoGap {
    fn default() -> Self {
        VideoGap { waiting: true, asked: None }
    }
}

impl VideoGap {
    fn frame(&mut self, now: std::time::Instant, keyframe: bool, contiguous: bool) -> Frame {
        if keyframe {
            self.waiting = false;
            self.asked = None;
            return Frame::Decode;
        }
        if !contiguous && !self.waiting {
            self.waiting = true;
            self.asked = None;
        }
        if !self.waiting {
            return Frame::Decode;
        }
        let ask = self.asked.is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_REASK);
        if ask {
            self.asked = Some(now);
        }
        Frame::Drop { ask }
    }
}

impl DirectParticipant {
    pub fn new(id: &str, mixer: Arc<RoomMixer>, opts: &JoinOptions, events: EventSender) -> Result<DirectParticipant> {
        let cfg = mixer.config().clone();
        let choice = mixer.delivery().choice_of(&opts.quality).with_context(|| format!("no rung `{}`", opts.quality))?;
        // Every configured ICE address, or every interface's.
        let bind = cfg
            .network
            .ice_addresses
            .iter()
            .map(|a| a.parse::<std::net::IpAddr>().with_context(|| format!("[network] ice_addresses: `{a}` is not an IP address")))
            .collect::<Result<Vec<_>>>()?;
        let bind = if bind.is_empty() { super::rtc::interface_addresses() } else { bind };
        let addresses = Addresses { bind, announce: cfg.network.announce_ips.clone() };
        // The decoder between the two is linked when the first frame says
        // the codec: a client may send either offered codec whatever its
        // answer lists (Chromium answering H.264 only still sends VP8
        // unless told otherwise, docs/interop.md).
        let desc = format!(
            "appsrc name=vin is-live=true do-timestamp=true format=time max-bytes=4000000 {tile}",
            tile = super::mixer::tile_chain()
        );
        let pipeline = gst::parse::launch(&desc)
            .context("direct participant pipeline does not parse")?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow::anyhow!("direct participant pipeline is not a pipeline"))?;
        pipeline.set_property("name", format!("participant-{id}"));
        let vin: gst_app::AppSrc = element(&pipeline, "vin")?;
        let video_codec: Arc<OnceLock<Codec>> = Default::default();
        // The codec decoded, or None when its decoder could not be linked.
        let decoding: Arc<OnceLock<Option<Codec>>> = Default::default();

        let ready = Arc::new(AtomicBool::new(false));
        let activity = Activity::new(true);
        let peer_slot = PeerSlot::default();
        let port_slot: Arc<OnceLock<Arc<AudioPort>>> = Default::default();
        let link_slot: Arc<OnceLock<Arc<LinkStats>>> = Default::default();
        let on_event: super::rtc::OnRtcEvent = {
            let (id, mixer, ready, events, activity) = (id.to_string(), Arc::downgrade(&mixer), ready.clone(), events.clone(), activity.clone());
            let (vin, peer_slot, port_slot, link_slot) = (vin.downgrade(), peer_slot.clone(), port_slot.clone(), link_slot.clone());
            let (decoding, weak_pipeline) = (decoding.clone(), pipeline.downgrade());
            let decoder = Mutex::new(OpusDecoder::new()?);
            let video_gap = Mutex::new(VideoGap::default());
            Arc::new(move |ev| match ev {
                RtcEvent::Connected => {
                    ready.store(true, Ordering::SeqCst);
                    if let Some(m) = mixer.upgrade() {
                        m.request_keyframe(&id);
                    }
                    // And the sender's first keyframe, to decode from.
                    if let Some(p) = peer_slot.get().and_then(|w| w.upgrade()) {
                        p.ask_keyframe();
                    }
                }
                RtcEvent::Failed(reason) => send(&events, MediaEvent::Failed { reason }),
                RtcEvent::AnswerApplied => send(&events, MediaEvent::AnswerApplied),
                RtcEvent::AnswerRefused(reason) => send(&events, MediaEvent::AnswerRefused { reason }),
                RtcEvent::Media { kind: MediaKind::Video, data, keyframe, contiguous, codec, .. } => {
                    let now = std::time::Instant::now();
                    activity.heard(now);
                    // The first frame's codec gets a decoder; a frame in
                    // another one later is dropped (a sender switching
                    // codecs mid-call is not followed). A decoder that
                    // cannot be linked (missing from the install) is
                    // tried once: the tile keeps the name card, the
                    // participant is still heard and sees the room.
                    let Some(codec) = codec else { return };
                    let decoded = decoding.get_or_init(|| {
                        let pipeline = weak_pipeline.upgrade()?;
                        match link_decoder(&pipeline, codec) {
                            Ok(()) => Some(codec),
                            Err(e) => {
                                tracing::warn!(participant = %id, "no decoder for its {} video, which is not shown: {e:#}", codec.name());
                                None
                            }
                        }
                    });
                    if *decoded != Some(codec) {
                        tracing::debug!(participant = %id, codec = codec.name(), "video frame in another codec than the first; dropped");
                        return;
                    }
                    let ask = match video_gap.lock().frame(now, keyframe, contiguous) {
                        Frame::Decode => {
                            if let Some(src) = vin.upgrade() {
                                let _ = src.push_buffer(gst::Buffer::from_mut_slice(data));
                            }
                            false
                        }
                        Frame::Drop { ask } => ask,
                    };
                    if ask {
                        if let Some(p) = peer_slot.get().and_then(|w| w.upgrade()) {
                            p.ask_keyframe();
                        }
                    }
                }
                RtcEvent::Media { data, rtp_time, level, .. } => {
                    activity.heard(std::time::Instant::now());
                    if let Some(port) = port_slot.get() {
                        // Too quiet to be heard now (its sender says, RFC
                        // 6464): not decoded; the decoder starts over when
                        // it is again.
                        let decode = match level {
                            Some(db) => port.told_level(db),
                            None => {
                                port.untold();
                                true
                            }
                        };
                        let mut decoder = decoder.lock();
                        if decode {
                            decoder.decode(&data, rtp_time, |pcm| port.push_input(pcm));
                        } else {
                            decoder.pause();
                        }
                    }
                }
                RtcEvent::KeyframeRequested => {
                    if let Some(m) = mixer.upgrade() {
                        m.request_keyframe(&id);
                    }
                }
                RtcEvent::Feedback(reports) => {
                    if let Some(link) = link_slot.get() {
                        link.feedback(&reports);
                    }
                }

            })
        };
        let ports = cfg.network.udp_ports.map(|r| (r.min, r.max));
        // Congestion control: the estimate starts where the top rung fits,
        // as on webrtcbin.
        let start = mixer.delivery().ladder().first().map(|r| r.link_bps()).unwrap_or(1_500_000);
        let peer = Arc::new(RtcPeer::offer(&addresses, ports, &cfg.dtls_certificate()?, Some(start), on_event)?);
        let _ = peer_slot.set(Arc::downgrade(&peer));

        let tile_el = TileElements::in_pipeline(&pipeline)?;
        let (video_out, audio_out) = (outlet(&peer_slot, 90_000), outlet(&peer_slot, 48_000));
        let handles = mixer.add_participant(id, tile_el, video_out, audio_out, ready.clone(), events.clone(), choice)?;
        let p = DirectParticipant { id: id.to_string(), activity, pipeline: pipeline.clone(), peer: peer.clone(), mixer: mixer.clone(), ready, video_codec };
        // From here on, an early return drops `p`, which removes the
        // participant from the mixer and stops the pipeline.
        let _ = port_slot.set(handles.audio);
        let _ = link_slot.set(handles.receiver.link.clone());
        let r = &handles.receiver;
        r.set_counters(peer.counters());
        *handles.flags.counters.lock() = Some(peer.counters());
        peer.watch_probing(Probing { probe_bps: r.probe_bps.clone(), proven_bps: r.proven_bps.clone() });
        connect_decoded_video(&pipeline, handles.room_in, handles.flags)?;
        pipeline.set_state(gst::State::Playing).context("the direct participant's pipeline refused to play")?;
        send(&events, MediaEvent::Offer { sdp: crate::protocol::with_audio_ptime(peer.sdp(), cfg.audio_ptime_ms) });
        Ok(p)
    }
}

/// What the room hands this participant goes to its peer, stamped in a
/// `rate` Hz clock (90 kHz: video, 48 kHz: Opus) from its clock time.
fn outlet(peer: &PeerSlot, rate: u64) -> Outlet {
    let peer = peer.clone();
    Outlet::Direct(Arc::new(move |buffer: &gst::Buffer, time: gst::ClockTime| {
        let (Some(peer), Ok(map)) = (peer.get().and_then(|w| w.upgrade()), buffer.map_readable()) else { return };
        let rtp_time = (time.nseconds() as u128 * rate as u128 / 1_000_000_000) as u64;
        if rate == 90_000 {
            peer.send_video(map.to_vec(), rtp_time);
        } else {
            peer.send_audio(map.to_vec(), rtp_time);
        }
    }))
}

impl DirectParticipant {
    /// The codec the answer chose (once: a later answer changes nothing):
    /// the receiver moves to its rungs; the peer, handed the same codec
    /// with the answer, sends it.
    fn take_video_codec(&self, codec: Codec) {
        if self.video_codec.set(codec).is_ok() {
            self.mixer.delivery().set_codec(&self.id, codec);
            tracing::debug!(participant = %self.id, "video sent as {} (str0m)", codec.name());
        }
    }
}

/// Put `codec`'s decoder between the participant's `vin` and its tile
/// chain (`vconv`), on the peer's task as the first frame comes: adding
/// and starting elements that have seen no data does not block.
fn link_decoder(pipeline: &gst::Pipeline, codec: Codec) -> Result<()> {
    let vin: gst_app::AppSrc = element(pipeline, "vin")?;
    let (caps, chain) = match codec {
        Codec::Vp8 => (gst::Caps::builder("video/x-vp8").build(), super::webrtc::chain(&["vp8dec"], 0)?),
        Codec::H264 => {
            let chain = super::webrtc::chain(&["h264parse", "avdec_h264"], 0)?;
            // Decoded on vin's thread, a frame at a time: libav's frame
            // threads would add a thread per core and a frame of latency
            // per thread to every H.264 participant.
            if let Some(dec) = chain.last() {
                dec.set_property("max-threads", 1i32);
            }
            (gst::Caps::builder("video/x-h264").field("stream-format", "byte-stream").field("alignment", "au").build(), chain)
        }
    };
    vin.set_caps(Some(&caps));
    let conv = element::<gst::Element>(pipeline, "vconv")?;
    pipeline.add_many(&chain).context("adding the video decoder")?;
    let mut all: Vec<&gst::Element> = vec![vin.upcast_ref()];
    all.extend(chain.iter());
    all.push(&conv);
    gst::Element::link_many(&all).context("linking the video decoder")?;
    for e in &chain {
        e.sync_state_with_parent().context("starting the video decoder")?;
    }
    tracing::debug!(pipeline = %pipeline.name(), "decoding {} video", codec.name());
    Ok(())
}

impl ParticipantMedia for DirectParticipant {
    fn apply_answer(&self, sdp: &str) {
        if !crate::protocol::answer_sends_media(sdp) {
            self.activity.sends.store(false, Ordering::Relaxed);
        }
        // An answer without a video codec we know gets VP8, which the
        // peer then refuses or the client ignores (as on webrtcbin).
        let video = crate::protocol::answer_video_codec(sdp).unwrap_or_default();
        self.take_video_codec(video);
        self.peer.apply_answer(sdp, video);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_frame_lost_for_good_freezes_the_tile_until_a_keyframe_asked_at_once_and_every_half_second() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut g = VideoGap::default();
        // Before the first keyframe: nothing decodable; the first delta
        // asks (the connection's own request may have been lost).
        assert_eq!(g.frame(at(0), false, true), Frame::Drop { ask: true });
        assert_eq!(g.frame(at(33), false, true), Frame::Drop { ask: false });
        assert_eq!(g.frame(at(66), true, true), Frame::Decode);
        assert_eq!(g.frame(at(100), false, true), Frame::Decode);
        // A loss str0m gave up on: frozen, a keyframe asked at once...
        assert_eq!(g.frame(at(133), false, false), Frame::Drop { ask: true });
        // ...and the following deltas, contiguous again, still wait.
        assert_eq!(g.frame(at(166), false, true), Frame::Drop { ask: false });
        assert_eq!(g.frame(at(600), false, true), Frame::Drop { ask: false });
        // Asked again when none came within half a second.
        assert_eq!(g.frame(at(633), false, true), Frame::Drop { ask: true });
        assert_eq!(g.frame(at(700), true, false), Frame::Decode, "a keyframe decodes, contiguous or not");
        assert_eq!(g.frame(at(733), false, true), Frame::Decode);
    }
}
