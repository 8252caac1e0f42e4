//! One participant's pipeline around `webrtcbin`.
//!
//! ```text
//!            ┌───────── webrtcbin ─────────┐
//! mix appsrc (Opus) ─ rtpopuspay ───► sink_0 (m-line 0, audio)      src (Opus) ─► opusdec ─ audioconvert ─ appsink ─► mix-minus ring
//! rung appsrc ─ rtpvp8pay ─────────► sink_1 (m-line 1, video)      src (VP8/H.264) ─► decoder ─ videoscale(letterbox) ─ appsink ─► compositor input
//!           (or rtph264pay)
//!            └─────────────────────────────┘
//! ```
//!
//! The offer lists VP8 and H.264 for video, VP8 first. The video send path
//! is linked when the answer arrives: the rung appsrc to the payloader of
//! the codec the answer chose, that payloader to webrtcbin (linked before
//! the offer, a payloader would narrow the offer to its own codec).
//!
//! GStreamer callbacks here never block: signaling output goes through the
//! bounded event channel with `try_send`, closures hold weak references, and
//! no lock of ours is held while a signal is emitted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use anyhow::{Context, Result};
use gst::glib;
use gst::prelude::*;
use gst_rtp::prelude::*;

use super::audio::audio_caps;
use super::delivery::{LinkStats, Receiver};
use super::mixer::{InputHandles, RoomMixer, TileElements};
use crate::ladder::{PADDING_PACKET_BYTES, RTP_HEADER_BYTES};
use crate::link::PacketReport;
use crate::protocol::Role;
use crate::room::JoinOptions;
use super::webrtc::{self, element, Peer, PeerEvent, Stream};
use super::{encoded_video_caps, offered_video_caps, opus_rtp_caps, shutdown_pipeline, unstamped, video_rtp_caps, TWCC_EXT_ID, TWCC_URI};
use crate::protocol::Codec;
use crate::room::{EventSender, MediaEvent, ParticipantEvent, ParticipantMedia};

/// When this participant's media last arrived, for dead-peer detection.
#[derive(Debug)]
pub(super) struct Activity {
    since: std::time::Instant,
    /// Milliseconds after `since` of the last incoming RTP buffer;
    /// u64::MAX before the first.
    last_ms: std::sync::atomic::AtomicU64,
    /// The answer sends media (set when it is applied; a participant is
    /// expected to until then).
    pub(super) sends: AtomicBool,
}

impl Activity {
    pub(super) fn new(sends: bool) -> Arc<Activity> {
        Arc::new(Activity { since: std::time::Instant::now(), last_ms: std::sync::atomic::AtomicU64::new(u64::MAX), sends: AtomicBool::new(sends) })
    }

    pub(super) fn heard(&self, now: std::time::Instant) {
        self.last_ms.store(now.saturating_duration_since(self.since).as_millis() as u64, Ordering::Relaxed);
    }

    pub(super) fn silence(&self, now: std::time::Instant) -> Option<std::time::Duration> {
        if !self.sends.load(Ordering::Relaxed) {
            return None;
        }
        let last = match self.last_ms.load(Ordering::Relaxed) {
            u64::MAX => self.since,
            ms => self.since + std::time::Duration::from_millis(ms),
        };
        Some(now.saturating_duration_since(last))
    }
}

pub struct ParticipantPipeline {
    id: String,
    activity: Arc<Activity>,
    receiver: Arc<Receiver>,
    pipeline: gst::Pipeline,
    peer: Peer,
    mixer: Arc<RoomMixer>,
    ready: Arc<AtomicBool>,
}

fn send(events: &EventSender, ev: MediaEvent) {
    if events.try_send(ParticipantEvent::Media(ev)).is_err() {
        tracing::warn!("participant event queue full or closed; event dropped");
    }
}

impl ParticipantPipeline {
    pub fn new(id: &str, mixer: Arc<RoomMixer>, opts: &JoinOptions, events: EventSender) -> Result<ParticipantPipeline> {
        let cfg = mixer.config().clone();
        let viewer = opts.role == Role::Viewer;
        let choice = mixer.delivery().choice_of(&opts.quality).with_context(|| format!("no rung `{}`", opts.quality))?;
        // Opus packets from the room's audio mixer, stamped by it: the shared
        // mix, or the mix-minus of this participant's talker slot while it
        // talks (see `media::audio`). A viewer only ever gets the shared one.
        let audio_out = format!(
            "appsrc name=asrc is-live=true do-timestamp=false format=time max-bytes=96000 ! rtpopuspay pt=111 ! capsfilter name=acaps ! webrtc.sink_0 {input}",
            input = if viewer {
                String::new()
            } else {
                format!(
                    "{tile} audioconvert name=aconv ! audioresample ! capsfilter name=amixcaps ! appsink name=asink sync=false async=false",
                    tile = super::mixer::tile_chain()
                )
            }
        );
        let desc = format!(
            "webrtcbin name=webrtc bundle-policy=max-bundle latency={jb} \
             appsrc name=vsrc is-live=true do-timestamp=true format=time max-bytes=2000000 \
             rtpvp8pay name=vpay pt=96 picture-id-mode=15-bit mtu=1200 ! capsfilter name=vcaps \
             rtph264pay name=hpay pt=102 config-interval=-1 aggregate-mode=zero-latency mtu=1200 ! capsfilter name=hcaps \
             {audio_out}",
            jb = cfg.jitterbuffer_ms,
        );
        let pipeline = gst::parse::launch(&desc)
            .context("participant pipeline does not parse")?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow::anyhow!("participant pipeline is not a pipeline"))?;
        pipeline.set_property("name", format!("participant-{id}"));
        let ready = Arc::new(AtomicBool::new(false));
        let peer = Peer::new(&pipeline, cfg.dtls_certificate()?, &cfg.network, on_peer_event(id, &mixer, &ready, &events))?;
        // Fewer, longer packets from the microphone (the ring in
        // media::audio plays them with the same 20 ms margin).
        peer.ask_ptime(cfg.audio_ptime_ms);
        let webrtcbin = peer.webrtcbin().clone();

        let by = |n: &str| pipeline.by_name(n).with_context(|| format!("{n} missing"));
        by("acaps")?.set_property("caps", opus_rtp_caps());
        by("vcaps")?.set_property("caps", video_rtp_caps(Codec::Vp8));
        by("hcaps")?.set_property("caps", video_rtp_caps(Codec::H264));
        let payloaders = [by("vpay")?, by("hpay")?];
        for pay in &payloaders {
            add_twcc_extension(pay)?;
        }
        let asrc: gst_app::AppSrc = element(&pipeline, "asrc")?;
        asrc.set_property_from_str("leaky-type", "downstream");
        let vsrc: gst_app::AppSrc = element(&pipeline, "vsrc")?;
        vsrc.set_property_from_str("leaky-type", "downstream");
        let direction = if viewer {
            gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly
        } else {
            gst_webrtc::WebRTCRTPTransceiverDirection::Sendrecv
        };
        accept_every_offered_codec(&webrtcbin);
        drop_unwanted_rtp(&pipeline);
        // The video sink is linked once the answer names its codec.
        webrtcbin.request_pad_simple("sink_1").context("webrtcbin gave no sink_1")?;
        for (pad, caps) in [("sink_0", opus_rtp_caps()), ("sink_1", offered_video_caps())] {
            let pad = webrtcbin.static_pad(pad).with_context(|| format!("webrtcbin {pad} missing"))?;
            let trans: gst_webrtc::WebRTCRTPTransceiver = pad.property("transceiver");
            trans.set_property("codec-preferences", &caps);
            trans.set_property("direction", direction);
        }
        // Video asks for lost packets again (NACK) and resends them (RTX).
        let video: gst_webrtc::WebRTCRTPTransceiver = webrtcbin.static_pad("sink_1").context("webrtcbin sink_1 missing")?.property("transceiver");
        video.set_property("do-nack", true);

        let (receiver, handles) = if viewer {
            (mixer.add_viewer(id, vsrc.clone(), asrc.clone(), ready.clone(), events.clone(), choice), None)
        } else {
            by("amixcaps")?.set_property("caps", audio_caps());
            let tile_el = TileElements::in_pipeline(&pipeline)?;
            let handles = mixer.add_participant(id, tile_el, vsrc.clone().into(), asrc.clone().into(), ready.clone(), events.clone(), choice)?;
            (handles.receiver.clone(), Some(handles))
        };
        receiver.set_peer(&webrtcbin);
        let p = ParticipantPipeline {
            id: id.to_string(),
            activity: Activity::new(!viewer),
            receiver: receiver.clone(),
            pipeline: pipeline.clone(),
            peer,
            mixer: mixer.clone(),
            ready,
        };
        // From here on, an early return drops `p`, which removes the
        // participant from the mixer and stops the pipeline.
        if let Some(handles) = handles {
            p.connect_decoded_outputs(handles)?;
        }
        p.connect_keyframe_requests(&vsrc)?;
        p.connect_congestion_control(&payloaders)?;
        p.connect_incoming();
        p.peer.play(std::time::Duration::from_secs(2))?;
        p.peer.offer();
        Ok(p)
    }

    /// Congestion control on the sending side: rtpsession parses the
    /// receiver's transport-wide feedback and sends it upstream as an
    /// `RTPTWCCPackets` event, which reaches the video payloader; its
    /// reports go to this receiver's [`LinkStats`], whose estimator runs on
    /// them as they arrive (no aux sender, no pacer thread per receiver).
    /// RTP padding is added while the rung controller probes.
    fn connect_congestion_control(&self, payloaders: &[gst::Element]) -> Result<()> {
        for pay in payloaders {
            let link = self.receiver.link.clone();
            let src = pay.static_pad("src").context("payloader has no src pad")?;
            src.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
                if let Some(ev) = info.event() {
                    if let Some(s) = ev.structure().filter(|s| s.name() == "RTPTWCCPackets") {
                        record_twcc(&link, s);
                    }
                }
                gst::PadProbeReturn::Ok
            });
            self.pad_while_probing(pay)?;
        }
        Ok(())
    }

    /// RTP padding after `pay`'s packets while the rung controller probes.
    /// Until the first probe nothing is rewritten (the probe returns at
    /// once); after it, sequence numbers are shifted in place, in the
    /// payloader's own buffers (a copy per packet cost 2.5 % of the send
    /// thread in a 25-person room).
    fn pad_while_probing(&self, pay: &gst::Element) -> Result<()> {
        let padding = self.receiver.padding_bps.clone();
        let pad = pay.static_pad("src").context("payloader has no src pad")?;
        let padder = Mutex::new(Padder::default());
        pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |pad, info| {
            let bps = padding.load(Ordering::Relaxed);
            let now = std::time::Instant::now();
            let mut padder = padder.lock();
            if padder.idle(bps, now) {
                return gst::PadProbeReturn::Ok;
            }
            match info.data.take() {
                // A probe may not turn a buffer into a list (rtph264pay
                // pushes single buffers): a lone packet goes on as a
                // buffer; with padding after it, the list goes straight to
                // the peer and the buffer counts as handled.
                Some(gst::PadProbeData::Buffer(mut b)) => {
                    let pads = padder.process(b.make_mut(), bps, now);
                    drop(padder);
                    if pads.is_empty() {
                        info.data = Some(gst::PadProbeData::Buffer(b));
                    } else {
                        let mut list = gst::BufferList::new_sized(pads.len() + 1);
                        {
                            let out = list.get_mut().expect("new list is writable");
                            out.add(b);
                            pads.into_iter().for_each(|p| out.add(p));
                        }
                        if let Some(peer) = pad.peer() {
                            let _ = peer.chain_list(list);
                        }
                        return gst::PadProbeReturn::Handled;
                    }
                }
                Some(gst::PadProbeData::BufferList(mut l)) => {
                    {
                        let l = l.make_mut();
                        let mut i = 0;
                        while i < l.len() {
                            let pads = match l.get_mut(i) {
                                Some(b) => padder.process(b, bps, now),
                                None => Vec::new(),
                            };
                            i += 1;
                            for p in pads {
                                l.insert(i, p);
                                i += 1;
                            }
                        }
                    }
                    info.data = Some(gst::PadProbeData::BufferList(l));
                }
                other => info.data = other,
            }
            gst::PadProbeReturn::Ok
        });
        Ok(())
    }

    fn connect_decoded_outputs(&self, handles: InputHandles) -> Result<()> {
        connect_decoded_outputs(&self.pipeline, handles, &self.peer)
    }

    /// The codec the answer chose: the rung appsrc gets its caps and is
    /// linked through that codec's payloader to webrtcbin, and the receiver
    /// moves to that codec's rungs. Once: a second answer changes nothing.
    fn link_video_send(&self, codec: Codec) -> Result<()> {
        let vsrc: gst_app::AppSrc = element(&self.pipeline, "vsrc")?;
        let src = vsrc.static_pad("src").context("vsrc has no src pad")?;
        if src.is_linked() {
            return Ok(());
        }
        let (pay, caps) = match codec {
            Codec::Vp8 => ("vpay", "vcaps"),
            Codec::H264 => ("hpay", "hcaps"),
        };
        let by = |n: &str| self.pipeline.by_name(n).with_context(|| format!("{n} missing"));
        vsrc.set_caps(Some(&encoded_video_caps(codec)));
        let sink = self.peer.webrtcbin().static_pad("sink_1").context("webrtcbin sink_1 missing")?;
        by(caps)?.static_pad("src").context("capsfilter has no src pad")?.link(&sink).context("linking the video payloader")?;
        src.link(&by(pay)?.static_pad("sink").context("payloader has no sink pad")?).context("linking the rung appsrc")?;
        self.mixer.delivery().set_codec(&self.id, codec);
        tracing::debug!(participant = %self.id, "video sent as {}", codec.name());
        Ok(())
    }

    /// PLI/FIR from this receiver arrive as upstream force-key-unit events
    /// at the rung appsrc; turn them into a (throttled) request on the
    /// room's shared encoder.
    fn connect_keyframe_requests(&self, vsrc: &gst_app::AppSrc) -> Result<()> {
        let mixer: Weak<RoomMixer> = Arc::downgrade(&self.mixer);
        let id = self.id.clone();
        let pad = vsrc.static_pad("src").context("vsrc has no src pad")?;
        pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
            if let Some(ev) = info.event() {
                if gst_video::UpstreamForceKeyUnitEvent::parse(ev).is_ok() {
                    if let Some(m) = mixer.upgrade() {
                        m.request_keyframe(&id);
                    }
                }
            }
            gst::PadProbeReturn::Ok
        });
        Ok(())
    }

    /// Incoming streams: the decoder for what arrived, into the tile
    /// (video) or the mix-minus (audio); anything else is dropped.
    fn connect_incoming(&self) {
        connect_incoming(&self.peer, &self.id, &self.activity);
    }
}

/// The decoded audio (`asink`) into the mix-minus ring and the decoded
/// tile (`vsink`) into the room's compositor input; `peer`'s jitterbuffers
/// for the repair statistics.
fn connect_decoded_outputs(pipeline: &gst::Pipeline, handles: InputHandles, peer: &Peer) -> Result<()> {
    let InputHandles { room_in, flags, audio: port, .. } = handles;
    *flags.jitterbuffers.lock() = Some(peer.jitterbuffers());
    *flags.peer.lock() = Some(peer.webrtcbin().downgrade());
    connect_decoded_video(pipeline, room_in, flags)?;
    let asink: gst_app::AppSink = element(pipeline, "asink")?;
    asink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(buffer) = sample.buffer() {
                    if let Ok(map) = buffer.map_readable() {
                        let samples: Vec<i16> =
                            map.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
                        port.push_input(&samples);
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(())
}

/// The decoded tile (`vsink`) into the room's compositor input `room_in`.
pub(super) fn connect_decoded_video(pipeline: &gst::Pipeline, room_in: gst_app::AppSrc, flags: Arc<super::mixer::InputFlags>) -> Result<()> {
    let vsink: gst_app::AppSink = element(pipeline, "vsink")?;
    vsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(buffer) = sample.buffer_owned() else { return Ok(gst::FlowSuccess::Ok) };
                flags.frames.lock().arrived(std::time::Instant::now());
                if let Some(caps) = sample.caps() {
                    if room_in.caps().as_ref().map(|c| c.as_ref()) != Some(caps) {
                        room_in.set_caps(Some(&caps.to_owned()));
                    }
                }
                if flags.video_off.load(Ordering::Relaxed) {
                    // Camera off: the name card stays on show.
                    return Ok(gst::FlowSuccess::Ok);
                }
                flags.has_video.store(true, Ordering::Relaxed);
                // The mixer may be flushing while the room closes.
                let _ = room_in.push_buffer(unstamped(&buffer));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(())
}

/// What arrives on `peer` (member `id`): each packet counts as heard in
/// `activity`; each stream is decoded into the pipeline's video or audio
/// converter, or dropped when there is none for it.
pub(super) fn connect_incoming(peer: &Peer, id: &str, activity: &Arc<Activity>) {
    let (id, activity) = (id.to_string(), activity.clone());
    peer.on_stream(move |pipeline, pad, stream| {
        let a = activity.clone();
        pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, _| {
            a.heard(std::time::Instant::now());
            gst::PadProbeReturn::Ok
        });
        match link_incoming(pipeline, pad, stream) {
            Ok(()) => tracing::debug!(member = %id, "incoming {}", stream.describe()),
            Err(e) => tracing::warn!(member = %id, "incoming {} not used: {e:#}", stream.describe()),
        }
    });
}

/// What the participant's webrtcbin reports, as room media events; a
/// connected receiver needs a keyframe to start decoding.
pub(super) fn on_peer_event(id: &str, mixer: &Arc<RoomMixer>, ready: &Arc<AtomicBool>, events: &EventSender) -> webrtc::OnEvent {
    let (id, mixer, ready, events) = (id.to_string(), Arc::downgrade(mixer), ready.clone(), events.clone());
    Arc::new(move |ev| match ev {
        PeerEvent::Ice { mline, candidate } => send(&events, MediaEvent::Ice { mline, candidate }),
        PeerEvent::LocalDescription(sdp) => send(&events, MediaEvent::Offer { sdp }),
        PeerEvent::RemoteApplied => send(&events, MediaEvent::AnswerApplied),
        PeerEvent::RemoteRefused(reason) => send(&events, MediaEvent::AnswerRefused { reason }),
        PeerEvent::Failed(reason) => send(&events, MediaEvent::Failed { reason }),
        PeerEvent::Connected => {
            ready.store(true, Ordering::SeqCst);
            if let Some(m) = mixer.upgrade() {
                m.request_keyframe(&id);
            }
        }
        PeerEvent::GatheringComplete => {}
    })
}

/// Let the payloader write the transport-wide sequence number extension
/// (rtpsession fills in the transport-wide number).
fn add_twcc_extension(pay: &gst::Element) -> Result<()> {
    let ext = gst_rtp::RTPHeaderExtension::create_from_uri(TWCC_URI).context("no TWCC header extension in GStreamer")?;
    ext.set_id(TWCC_EXT_ID as u32);
    pay.emit_by_name::<()>("add-extension", &[&ext]);
    Ok(())
}

/// Feed one `RTPTWCCPackets` event (from rtpsession) into `link`.
fn record_twcc(link: &LinkStats, s: &gst::StructureRef) {
    let Ok(packets) = s.get::<glib::ValueArray>("packets") else { return };
    let reports: Vec<PacketReport> = packets
        .iter()
        .filter_map(|v| v.get::<gst::Structure>().ok())
        .map(|p| {
            let lost = p.get::<bool>("lost").unwrap_or(false);
            // rtpsession reports the RTP *payload* size: a padding-only packet
            // (ours, from the prober) reports 0; count what went on the wire.
            let bytes = match p.get::<u32>("size").unwrap_or(0) {
                0 => PADDING_PACKET_BYTES,
                n => n + RTP_HEADER_BYTES,
            };
            let time = |k: &str| p.get::<u64>(k).ok().filter(|t| *t != u64::MAX);
            PacketReport { sent_ns: time("local-ts"), arrived_ns: if lost { None } else { time("remote-ts") }, bytes }
        })
        .collect();
    link.feedback(&reports);
}

/// Rewrites the video's RTP sequence numbers so that padding-only packets
/// can be inserted between frames while the rung controller probes.
#[derive(Default)]
struct Padder {
    offset: u16,
    last: Option<std::time::Instant>,
    /// Bits of padding owed.
    owed: f64,
}

/// Largest RTP padding (one length byte).
const PAD_BYTES: u8 = 255;


impl Padder {
    /// Nothing to do for a push at `now`: no padding owed or asked for and
    /// no sequence numbers shifted yet. Keeps the clock of the last push,
    /// so that padding asked for later is owed from then on.
    fn idle(&mut self, bps: u32, now: std::time::Instant) -> bool {
        if bps == 0 && self.offset == 0 {
            self.last = Some(now);
            self.owed = 0.0;
            return true;
        }
        false
    }

    /// Shift `buf`'s sequence number past the padding sent so far; after
    /// the last packet of a frame, the padding packets owed at `now`.
    fn process(&mut self, buf: &mut gst::BufferRef, bps: u32, now: std::time::Instant) -> Vec<gst::Buffer> {
        let (marker, ssrc, pt, ts, last_seq) = {
            let Ok(mut rtp) = gst_rtp::RTPBuffer::from_buffer_writable(buf) else {
                return Vec::new();
            };
            let seq = rtp.seq().wrapping_add(self.offset);
            rtp.set_seq(seq);
            (rtp.is_marker(), rtp.ssrc(), rtp.payload_type(), rtp.timestamp(), seq)
        };
        let pts = buf.pts();
        let elapsed = self.last.map(|t| now.duration_since(t).as_secs_f64()).unwrap_or(0.0).min(0.2);
        self.last = Some(now);
        if bps == 0 {
            self.owed = 0.0;
            return Vec::new();
        }
        self.owed += bps as f64 * elapsed;
        if !marker {
            return Vec::new();
        }
        // Between frames: add what is owed, at most 60 packets at once.
        let per = PADDING_PACKET_BYTES as f64 * 8.0;
        let (mut seq, mut out) = (last_seq, Vec::new());
        while self.owed >= per && out.len() < 60 {
            seq = seq.wrapping_add(1);
            self.offset = self.offset.wrapping_add(1);
            let mut p = gst::Buffer::from_mut_slice(crate::ladder::padding_packet(ssrc, pt, seq, ts, TWCC_EXT_ID, PAD_BYTES));
            if let Some(b) = p.get_mut() {
                b.set_pts(pts);
            }
            out.push(p);
            self.owed -= per;
        }
        self.owed = self.owed.min(per * 60.0);
        out
    }
}

/// Receive every video codec of our offer, whatever the answer lists.
///
/// An SDP's codec list says what its author can *receive* (RFC 3264), so a
/// client may send any codec of our offer: Chromium answering with H.264
/// only (`setCodecPreferences`) still sends VP8, the offer's first. webrtcbin
/// 1.22 maps incoming payload types from the answer alone and dropped that
/// video; its rtpbin asks every `request-pt-map` handler until one knows
/// the payload type, so ours answers for the offer's video codecs after it.
pub(super) fn accept_every_offered_codec(webrtcbin: &gst::Element) {
    let Some(rtpbin) = webrtcbin.downcast_ref::<gst::Bin>().and_then(|b| b.by_name("rtpbin")) else {
        tracing::warn!("webrtcbin has no rtpbin child: video in a codec the answer left out is dropped");
        return;
    };
    rtpbin.connect("request-pt-map", false, |values| {
        let pt = values.get(2).and_then(|v| v.get::<u32>().ok())?;
        let codec = Codec::ALL.into_iter().find(|c| super::video_pt(*c) as u32 == pt)?;
        Some(video_rtp_caps(codec).to_value())
    });
}

/// Media nobody asked for is dropped where it would stop the connection.
/// Regression: a viewer receives nothing, so webrtcbin links no receive
/// path to its transport; a client that sent anyway (one that joined as a
/// participant on a viewer token) had its RTP pushed into the transport's
/// unlinked `rtp_src`, the transport stopped (`not-linked`) and the viewer
/// was removed with `media_failed`.
pub(super) fn drop_unwanted_rtp(pipeline: &gst::Pipeline) {
    pipeline.connect_deep_element_added(|_, _, element| {
        // webrtcbin makes it with g_object_new: no factory, only a type.
        if element.type_().name() == "TransportReceiveBin" {
            if let Some(pad) = element.static_pad("rtp_src") {
                // Once webrtcbin links it (a participant's), the probe goes.
                pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, |pad, _| {
                    if pad.is_linked() {
                        gst::PadProbeReturn::Remove
                    } else {
                        gst::PadProbeReturn::Drop
                    }
                });
            }
        }
    });
}

/// Link a new webrtcbin source pad to its decoder chain ending at the
/// pipeline's video or audio converter (one stream of each kind).
pub(super) fn link_incoming(pipeline: &gst::Pipeline, pad: &gst::Pad, stream: &Stream) -> Result<()> {
    let target = pipeline.by_name(if stream.is_video() { "vconv" } else { "aconv" });
    let free = target.as_ref().and_then(|t| t.static_pad("sink")).is_some_and(|p| !p.is_linked());
    match (stream.decoder(), target) {
        // Decoded on the jitterbuffer's own streaming thread: a queue here
        // added two threads per participant and a hand-over per packet.
        (Some(decoder), Some(target)) if free => {
            let chain = webrtc::chain(decoder, 0)?;
            webrtc::freeze_on_loss(&chain);
            webrtc::attach(pipeline, pad, &chain, &target)
        }
        _ => {
            webrtc::discard(pipeline, pad)?;
            anyhow::bail!("no decoder for it, or one of its kind is already linked; dropping it");
        }
    }
}

impl ParticipantMedia for ParticipantPipeline {
    fn apply_answer(&self, sdp: &str) {
        if self.activity.sends.load(Ordering::Relaxed) && !crate::protocol::answer_sends_media(sdp) {
            self.activity.sends.store(false, Ordering::Relaxed);
        }
        // An answer without a video codec we know gets VP8, which webrtcbin
        // then refuses or the client ignores.
        let codec = crate::protocol::answer_video_codec(sdp).unwrap_or_default();
        if let Err(e) = self.link_video_send(codec) {
            tracing::warn!(participant = %self.id, "video send path not linked: {e:#}");
        }
        self.peer.apply_answer(sdp);
    }

    fn media_silence(&self, now: std::time::Instant) -> Option<std::time::Duration> {
        self.activity.silence(now)
    }

    fn set_quality(&self, quality: &str) {
        if let Some(choice) = self.mixer.delivery().choice_of(quality) {
            self.mixer.delivery().set_choice(&self.id, choice);
        }
    }

    fn add_ice(&self, sdp_mline_index: u32, candidate: &str) {
        self.peer.add_ice(sdp_mline_index, candidate);
    }
}

impl Drop for ParticipantPipeline {
    fn drop(&mut self) {
        self.ready.store(false, Ordering::SeqCst);
        self.mixer.remove_participant(&self.id);
        shutdown_pipeline(&self.pipeline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn silence_counts_from_the_join_then_from_the_last_packet() {
        let a = Activity::new(true);
        let t0 = a.since;
        assert_eq!(a.silence(t0 + Duration::from_secs(4)), Some(Duration::from_secs(4)), "nothing yet: since the join");
        a.heard(t0 + Duration::from_secs(5));
        assert_eq!(a.silence(t0 + Duration::from_secs(7)), Some(Duration::from_secs(2)));
        a.sends.store(false, Ordering::Relaxed);
        assert_eq!(a.silence(t0 + Duration::from_secs(60)), None, "an answer that sends nothing is never silent");
        assert_eq!(Activity::new(false).silence(t0 + Duration::from_secs(60)), None, "a viewer");
    }

    fn rtp(seq: u16, marker: bool) -> gst::Buffer {
        let mut b = gst::Buffer::new_rtp_with_sizes(10, 0, 0).expect("an RTP buffer");
        {
            let mut r = gst_rtp::RTPBuffer::from_buffer_writable(b.get_mut().expect("new")).expect("maps");
            r.set_seq(seq);
            r.set_marker(marker);
            r.set_ssrc(7);
            r.set_payload_type(96);
        }
        b
    }

    fn seq(b: &gst::BufferRef) -> u16 {
        gst_rtp::RTPBuffer::from_buffer_readable(b).expect("maps").seq()
    }

    #[test]
    fn nothing_is_rewritten_until_padding_is_asked_for() {
        gst::init().expect("gstreamer");
        let (mut p, t0) = (Padder::default(), std::time::Instant::now());
        assert!(p.idle(0, t0), "no padding asked, nothing shifted: the probe passes packets untouched");
        assert!(!p.idle(20_000, t0 + Duration::from_millis(33)));
    }

    #[test]
    fn padding_follows_a_frame_and_shifts_the_packets_after_it() {
        gst::init().expect("gstreamer");
        let (mut p, t0) = (Padder::default(), std::time::Instant::now());
        assert!(p.idle(0, t0));
        // 100 ms at 110 kbit/s owes 11,000 bits: 5 packets of 2,200.
        let mut a = rtp(1000, false);
        assert!(p.process(a.make_mut(), 110_000, t0 + Duration::from_millis(100)).is_empty(), "no padding inside a frame");
        let mut b = rtp(1001, true);
        let pads = p.process(b.make_mut(), 110_000, t0 + Duration::from_millis(100));
        assert_eq!(pads.len(), 5, "what 100 ms at 110 kbit/s owes, after the frame's last packet");
        let seqs: Vec<u16> = pads.iter().map(|b| seq(b)).collect();
        assert_eq!(seqs, vec![1002, 1003, 1004, 1005, 1006]);
        assert!(pads.iter().all(|b| b.size() == PADDING_PACKET_BYTES as usize));
        // Padding stops; the stream goes on after the padding, and keeps
        // its shift (the idle path no longer applies).
        assert!(!p.idle(0, t0 + Duration::from_millis(133)));
        let mut c = rtp(1002, true);
        assert!(p.process(c.make_mut(), 0, t0 + Duration::from_millis(133)).is_empty());
        assert_eq!(seq(&c), 1007);
        assert_eq!((seq(&a), seq(&b)), (1000, 1001), "packets before the padding keep their numbers");
    }
}
