//! One signaling connection as a pure state machine: client messages and
//! room/media events in, messages for the client and commands for the room
//! out. No sockets, tasks or GStreamer here; the WebSocket task in
//! [`super`] only does I/O and carries the commands out.
//!
//! The rules it owns (docs/protocol.md):
//! * one `join` at a time; everything else needs a room (`not_joined`);
//! * an `answer` only after the offer was sent, and only one accepted
//!   answer per offer (`answer_before_offer`); a refused answer may be
//!   followed by a corrected one;
//! * the client's ICE candidates are buffered until its answer is applied
//!   then handed over in order; at most `max_ice_candidates` per join
//!   (`too_many_candidates`);
//! * the server's candidates reach the client only after the offer;
//! * a connection silent for `idle_timeout` is closed (`idle_timeout`), a
//!   participant whose media stopped for `media_timeout` leaves its room
//!   (`media_timeout`).

use std::time::Duration;

use crate::auth::Claims;
use crate::config::Limits;
use crate::protocol::{candidate_has_name, is_mdns_candidate, validate_name, without_named_candidates, ClientMessage, ErrorCode, ProtocolError, Role, ServerMessage};
use crate::room::{JoinOptions, LayoutRequest, MediaEvent, ParticipantEvent, RungInfo};

/// What happens to a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A text frame from the client, parsed and validated (or why not).
    Frame(Result<ClientMessage, ProtocolError>),
    /// The outcome of [`Output::Join`].
    JoinDone(Result<(), ProtocolError>),
    /// An event of the room or of the participant's media.
    Event(ParticipantEvent),
    /// The room dropped this participant's event channel.
    EventsClosed,
    /// A clock tick: how long the client has been silent, and how long the
    /// participant's media (None: it is not expected to send any).
    Tick { ws_silent: Duration, media_silent: Option<Duration> },
}

/// What the I/O side must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Send(ServerMessage),
    /// Join a room; report the outcome with [`Input::JoinDone`].
    Join { room: String, name: String, opts: JoinOptions },
    /// Leave the room (drop the membership).
    Leave,
    ApplyAnswer(String),
    AddIce { mline: u32, candidate: String },
    /// Choose a rung; a refusal is sent to the client as an error.
    SetQuality(String),
    Mute { audio: Option<bool>, video: Option<bool> },
    /// Change the room's layout or pins; a refusal is sent as an error.
    Layout(LayoutRequest),
    /// Relay a chat message to the room; a refusal is sent as an error.
    Chat(String),
    /// Send this error, then close the connection.
    Close(ProtocolError),
    /// Send this message, then close the connection normally.
    Hangup(ServerMessage),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// No answer accepted yet (or the last one was refused).
    None,
    /// Handed to media, outcome pending.
    Applying,
    Applied,
}

#[derive(Debug, Clone, PartialEq)]
struct InRoom {
    offer_sent: bool,
    answer: Answer,
    /// The server's candidates gathered before the offer went out.
    early_ice: Vec<ServerMessage>,
    /// The client's candidates that arrived before its answer was applied.
    pending_ice: Vec<(u32, String)>,
    /// Candidates received in this room.
    ice_count: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Idle,
    Joining,
    InRoom(InRoom),
}

/// The per-connection state machine.
#[derive(Debug)]
pub struct Session {
    state: State,
    /// The room token this connection was opened with (auth on).
    grant: Option<Claims>,
    limits: Limits,
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> Output {
    Output::Send(ServerMessage::Error { code, message: message.into() })
}

fn not_joined() -> Output {
    error(ErrorCode::NotJoined, "join a room first")
}

impl Session {
    pub fn new() -> Session {
        Session::with_grant(None, Limits::default())
    }

    /// A connection opened with a verified room token: it may join only
    /// the token's room, under the token's name when it has one, and as a
    /// viewer when the token may not publish.
    pub fn with_grant(grant: Option<Claims>, limits: Limits) -> Session {
        Session { state: State::Idle, grant, limits }
    }

    /// In a room (joined, not left)?
    pub fn in_room(&self) -> bool {
        matches!(self.state, State::InRoom(_))
    }

    /// Feed one input; returns what to do, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        match input {
            Input::Frame(Err(e)) => vec![Output::Send(e.to_message())],
            Input::Frame(Ok(msg)) => self.client(msg),
            Input::JoinDone(res) => self.join_done(res),
            Input::Event(ParticipantEvent::Send(m)) => self.room_message(m),
            Input::Event(ParticipantEvent::Removed(reason)) => match self.state {
                State::Idle => Vec::new(),
                _ => {
                    self.state = State::Idle;
                    vec![Output::Leave, Output::Hangup(ServerMessage::Removed { reason })]
                }
            },
            Input::Event(ParticipantEvent::Close(e)) => match self.state {
                State::Idle => Vec::new(),
                _ => {
                    self.state = State::Idle;
                    vec![Output::Leave, Output::Close(e)]
                }
            },
            Input::Event(ParticipantEvent::Media(ev)) => self.media(ev),
            Input::EventsClosed => match self.state {
                State::InRoom(_) => {
                    self.state = State::Idle;
                    vec![Output::Leave]
                }
                _ => Vec::new(),
            },
            Input::Tick { ws_silent, media_silent } => self.tick(ws_silent, media_silent),
        }
    }

    fn tick(&mut self, ws_silent: Duration, media_silent: Option<Duration>) -> Vec<Output> {
        let in_room = self.state != State::Idle;
        if ws_silent >= self.limits.idle_timeout {
            self.state = State::Idle;
            let e = ProtocolError::new(ErrorCode::IdleTimeout, format!("nothing heard from this connection for {} s", ws_silent.as_secs()));
            return if in_room { vec![Output::Leave, Output::Close(e)] } else { vec![Output::Close(e)] };
        }
        match (&self.state, self.limits.media_timeout, media_silent) {
            (State::InRoom(_), Some(limit), Some(silent)) if silent >= limit => {
                self.state = State::Idle;
                vec![Output::Leave, error(ErrorCode::MediaTimeout, format!("no media from this participant for {} s; it left the room", silent.as_secs()))]
            }
            _ => Vec::new(),
        }
    }

    fn client(&mut self, msg: ClientMessage) -> Vec<Output> {
        if let ClientMessage::Join { room, mut name, mut role, quality, share_of, share_key } = msg {
            if self.state != State::Idle {
                return vec![error(ErrorCode::AlreadyJoined, "already in a room; send `leave` first")];
            }
            if let Some(c) = &self.grant {
                if !c.for_room(&room) {
                    return vec![error(ErrorCode::Forbidden, format!("this connection's token is for room `{}`, not `{room}`", c.grant.room))];
                }
                if let Some(n) = &c.name {
                    match validate_name(n, &self.limits.message) {
                        Ok(n) => name = n,
                        Err(e) => return vec![Output::Send(e.to_message())],
                    }
                }
                if c.receive_only() {
                    if role == Role::Share {
                        return vec![error(ErrorCode::Forbidden, "this connection's token may not publish, so it may not share a screen")];
                    }
                    role = Role::Viewer;
                }
            }
            self.state = State::Joining;
            let share_of = share_of.zip(share_key).filter(|_| role == Role::Share);
            return vec![Output::Join { room, name, opts: JoinOptions { role, quality, share_of } }];
        }
        let State::InRoom(r) = &mut self.state else {
            return vec![not_joined()];
        };
        match msg {
            ClientMessage::Join { .. } => unreachable!("handled above"),
            ClientMessage::Answer { sdp } => {
                if !r.offer_sent {
                    return vec![error(ErrorCode::AnswerBeforeOffer, "no offer has been sent to this connection yet; wait for `offer`")];
                }
                if r.answer != Answer::None {
                    return vec![error(ErrorCode::AnswerBeforeOffer, "the offer was already answered")];
                }
                r.answer = Answer::Applying;
                vec![Output::ApplyAnswer(without_named_candidates(&sdp))]
            }
            ClientMessage::Ice { candidate, sdp_mline_index } => {
                if candidate.is_empty() {
                    return Vec::new(); // end-of-candidates
                }
                if is_mdns_candidate(&candidate) {
                    return Vec::new(); // unresolvable here; ICE finds the peer-reflexive address
                }
                if candidate_has_name(&candidate) {
                    return vec![error(ErrorCode::InvalidField, "a candidate's address must be an IP address: the server resolves no names")];
                }
                let max = self.limits.max_ice_candidates;
                if r.ice_count >= max {
                    return vec![error(ErrorCode::TooManyCandidates, format!("at most {max} ICE candidates per join; this one is ignored"))];
                }
                r.ice_count += 1;
                if r.answer == Answer::Applied {
                    return vec![Output::AddIce { mline: sdp_mline_index, candidate }];
                }
                r.pending_ice.push((sdp_mline_index, candidate));
                Vec::new()
            }
            ClientMessage::SetQuality { quality } => vec![Output::SetQuality(quality)],
            ClientMessage::Mute { audio, video } => vec![Output::Mute { audio, video }],
            ClientMessage::SetLayout { group, layout } => {
                vec![Output::Layout(LayoutRequest { group, layout, pins: Default::default() })]
            }
            ClientMessage::Pin { slot, id } => {
                vec![Output::Layout(LayoutRequest { pins: [(slot, id)].into_iter().collect(), ..Default::default() })]
            }
            ClientMessage::Chat { text } => vec![Output::Chat(text)],
            ClientMessage::Leave => {
                self.state = State::Idle;
                vec![Output::Leave]
            }
        }
    }

    fn join_done(&mut self, res: Result<(), ProtocolError>) -> Vec<Output> {
        if self.state != State::Joining {
            return Vec::new();
        }
        match res {
            Ok(()) => {
                self.state = State::InRoom(InRoom { offer_sent: false, answer: Answer::None, early_ice: Vec::new(), pending_ice: Vec::new(), ice_count: 0 });
                Vec::new()
            }
            Err(e) => {
                self.state = State::Idle;
                vec![Output::Send(e.to_message())]
            }
        }
    }

    fn room_message(&mut self, m: ServerMessage) -> Vec<Output> {
        match self.state {
            // Messages of a room this connection already left are stale.
            State::Idle => Vec::new(),
            _ => vec![Output::Send(m)],
        }
    }

    fn media(&mut self, ev: MediaEvent) -> Vec<Output> {
        let State::InRoom(r) = &mut self.state else {
            return Vec::new();
        };
        match ev {
            MediaEvent::Offer { sdp } => {
                r.offer_sent = true;
                let mut out = vec![Output::Send(ServerMessage::Offer { sdp })];
                out.extend(r.early_ice.drain(..).map(Output::Send));
                out
            }
            MediaEvent::Ice { mline, candidate } => {
                let m = ServerMessage::Ice { candidate, sdp_mline_index: mline };
                if r.offer_sent {
                    vec![Output::Send(m)]
                } else {
                    // Gathered while the offer is on its way: after it.
                    r.early_ice.push(m);
                    Vec::new()
                }
            }
            MediaEvent::AnswerApplied => {
                if r.answer != Answer::Applying {
                    return Vec::new();
                }
                r.answer = Answer::Applied;
                r.pending_ice.drain(..).map(|(mline, candidate)| Output::AddIce { mline, candidate }).collect()
            }
            MediaEvent::AnswerRefused { reason } => {
                if r.answer == Answer::Applying {
                    r.answer = Answer::None;
                }
                vec![error(ErrorCode::InvalidSdp, format!("the answer was refused: {reason}"))]
            }
            MediaEvent::Rung(RungInfo { rung, width, height, fps, kbps, auto, estimate_kbps, codec }) => {
                vec![Output::Send(ServerMessage::Quality { rung, width, height, fps, kbps, auto, estimate_kbps, codec })]
            }
            MediaEvent::Failed { reason } => {
                tracing::warn!("participant removed: {reason}");
                self.state = State::Idle;
                vec![Output::Leave, error(ErrorCode::MediaFailed, reason)]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{parse_client_message, Role};

    fn frame(s: &mut Session, json: &str) -> Vec<Output> {
        s.handle(Input::Frame(parse_client_message(json)))
    }

    fn media(s: &mut Session, ev: MediaEvent) -> Vec<Output> {
        s.handle(Input::Event(ParticipantEvent::Media(ev)))
    }

    fn codes(out: &[Output]) -> Vec<ErrorCode> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send(ServerMessage::Error { code, .. }) => Some(*code),
                _ => None,
            })
            .collect()
    }

    /// A session that joined room `r`.
    fn joined() -> Session {
        let mut s = Session::new();
        let out = frame(&mut s, r#"{"type":"join","room":"r","name":"Ada"}"#);
        assert_eq!(out, vec![Output::Join { room: "r".into(), name: "Ada".into(), opts: JoinOptions { role: Role::Participant, quality: "auto".into(), share_of: None } }]);
        assert!(s.handle(Input::JoinDone(Ok(()))).is_empty());
        assert!(s.in_room());
        s
    }

    fn offered() -> Session {
        let mut s = joined();
        let out = media(&mut s, MediaEvent::Offer { sdp: "v=0".into() });
        assert_eq!(out, vec![Output::Send(ServerMessage::Offer { sdp: "v=0".into() })]);
        s
    }

    const ANSWER: &str = r#"{"type":"answer","sdp":"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 AA\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:u\r\na=ice-pwd:pppppppppppppppppppppp\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:u\r\na=ice-pwd:pppppppppppppppppppppp\r\n"}"#;

    fn ice(i: usize) -> String {
        format!(r#"{{"type":"ice","candidate":"candidate:{i} 1 UDP 2122260223 127.0.0.1 {} typ host","sdpMLineIndex":0}}"#, 40000 + i)
    }

    #[test]
    fn a_token_binds_the_room_the_name_and_the_role() {
        use crate::auth::{Grant, TokenRole};
        let grant = |role, can_publish| Claims {
            sub: "u1".into(),
            name: Some("Token Name".into()),
            exp: u64::MAX / 2,
            nbf: None,
            grant: Grant { room: "r".into(), role, can_publish, can_subscribe: true },
        };
        let mut s = Session::with_grant(Some(grant(TokenRole::Participant, true)), Limits::default());
        assert_eq!(codes(&frame(&mut s, r#"{"type":"join","room":"other","name":"Ada"}"#)), vec![ErrorCode::Forbidden]);
        let out = frame(&mut s, r#"{"type":"join","room":"r","name":"Ada"}"#);
        assert!(matches!(&out[..], [Output::Join { name, opts, .. }] if name == "Token Name" && opts.role == Role::Participant), "{out:?}");
        let mut s = Session::with_grant(Some(grant(TokenRole::Participant, false)), Limits::default());
        let out = frame(&mut s, r#"{"type":"join","room":"r","name":"Ada"}"#);
        assert!(matches!(&out[..], [Output::Join { opts, .. }] if opts.role == Role::Viewer), "may not publish: a viewer");
        let mut s = Session::with_grant(Some(grant(TokenRole::Viewer, true)), Limits::default());
        let out = frame(&mut s, r#"{"type":"join","room":"r","name":"Ada"}"#);
        assert!(matches!(&out[..], [Output::Join { opts, .. }] if opts.role == Role::Viewer));
    }

    #[test]
    fn a_share_join_carries_its_participant_and_the_room_may_end_it() {
        let mut s = Session::new();
        let out = frame(&mut s, r#"{"type":"join","room":"r","name":"Ada","role":"share","share_of":"p1","share_key":"ab12"}"#);
        assert!(matches!(&out[..], [Output::Join { opts, .. }] if opts.role == Role::Share && opts.share_of == Some(("p1".into(), "ab12".into()))), "{out:?}");
        s.handle(Input::JoinDone(Ok(())));
        let end = ProtocolError::new(ErrorCode::ShareEnded, "the participant left");
        assert_eq!(s.handle(Input::Event(ParticipantEvent::Close(end.clone()))), vec![Output::Leave, Output::Close(end.clone())]);
        assert!(!s.in_room());
        assert!(s.handle(Input::Event(ParticipantEvent::Close(end))).is_empty(), "once");
        // A token that may not publish may not share.
        use crate::auth::{Grant, TokenRole};
        let c = Claims { sub: "u".into(), name: None, exp: u64::MAX / 2, nbf: None, grant: Grant { room: "r".into(), role: TokenRole::Viewer, can_publish: false, can_subscribe: true } };
        let mut s = Session::with_grant(Some(c), Limits::default());
        let out = frame(&mut s, r#"{"type":"join","room":"r","name":"Ada","role":"share","share_of":"p1","share_key":"ab12"}"#);
        assert_eq!(codes(&out), vec![ErrorCode::Forbidden]);
    }

    #[test]
    fn join_twice_is_refused_and_leave_allows_a_new_join() {
        let mut s = joined();
        assert_eq!(codes(&frame(&mut s, r#"{"type":"join","room":"r","name":"Ada"}"#)), vec![ErrorCode::AlreadyJoined]);
        assert_eq!(frame(&mut s, r#"{"type":"leave"}"#), vec![Output::Leave]);
        assert!(!s.in_room());
        assert!(matches!(frame(&mut s, r#"{"type":"join","room":"r2","name":"Ada"}"#)[..], [Output::Join { .. }]));
    }

    #[test]
    fn a_join_in_progress_refuses_a_second_join() {
        let mut s = Session::new();
        frame(&mut s, r#"{"type":"join","room":"r","name":"Ada"}"#);
        assert_eq!(codes(&frame(&mut s, r#"{"type":"join","room":"r","name":"Ada"}"#)), vec![ErrorCode::AlreadyJoined]);
    }

    #[test]
    fn a_failed_join_reports_its_code_and_leaves_the_session_idle() {
        let mut s = Session::new();
        frame(&mut s, r#"{"type":"join","room":"r","name":"Ada"}"#);
        let out = s.handle(Input::JoinDone(Err(ProtocolError::new(ErrorCode::RoomFull, "full"))));
        assert_eq!(codes(&out), vec![ErrorCode::RoomFull]);
        assert!(!s.in_room());
        assert_eq!(codes(&frame(&mut s, ANSWER)), vec![ErrorCode::NotJoined]);
        assert!(matches!(frame(&mut s, r#"{"type":"join","room":"r","name":"Ada"}"#)[..], [Output::Join { .. }]));
    }

    #[test]
    fn messages_outside_a_room_are_not_joined() {
        let mut s = Session::new();
        for m in [ANSWER, &ice(1), r#"{"type":"leave"}"#, r#"{"type":"mute","audio":true}"#, r#"{"type":"set_quality","quality":"low"}"#, r#"{"type":"set_layout","group":"grid"}"#, r#"{"type":"pin","slot":"host","id":"p1"}"#] {
            assert_eq!(codes(&frame(&mut s, m)), vec![ErrorCode::NotJoined], "{m}");
        }
    }

    #[test]
    fn answer_before_offer_is_refused() {
        let mut s = joined();
        assert_eq!(codes(&frame(&mut s, ANSWER)), vec![ErrorCode::AnswerBeforeOffer]);
        // Once the offer is out, the same answer is taken.
        media(&mut s, MediaEvent::Offer { sdp: "v=0".into() });
        assert!(matches!(frame(&mut s, ANSWER)[..], [Output::ApplyAnswer(_)]));
    }

    #[test]
    fn a_second_answer_is_refused_but_a_refused_answer_may_be_corrected() {
        let mut s = offered();
        assert!(matches!(frame(&mut s, ANSWER)[..], [Output::ApplyAnswer(_)]));
        // While the first is being applied, and after it was.
        assert_eq!(codes(&frame(&mut s, ANSWER)), vec![ErrorCode::AnswerBeforeOffer]);
        assert_eq!(codes(&media(&mut s, MediaEvent::AnswerRefused { reason: "bad fingerprint".into() })), vec![ErrorCode::InvalidSdp]);
        assert!(matches!(frame(&mut s, ANSWER)[..], [Output::ApplyAnswer(_)]));
        assert!(media(&mut s, MediaEvent::AnswerApplied).is_empty());
        assert_eq!(codes(&frame(&mut s, ANSWER)), vec![ErrorCode::AnswerBeforeOffer]);
    }

    #[test]
    fn ice_before_the_answer_is_buffered_then_handed_over_in_order() {
        let mut s = offered();
        for i in 0..3 {
            assert!(frame(&mut s, &ice(i)).is_empty(), "candidate {i} must be buffered, not refused");
        }
        assert!(matches!(frame(&mut s, ANSWER)[..], [Output::ApplyAnswer(_)]));
        // Still applying: buffered too.
        assert!(frame(&mut s, &ice(3)).is_empty());
        let out = media(&mut s, MediaEvent::AnswerApplied);
        let ports: Vec<String> = out
            .iter()
            .map(|o| match o {
                Output::AddIce { mline: 0, candidate } => candidate.split(' ').nth(5).unwrap_or("").to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ports, ["40000", "40001", "40002", "40003"]);
        // After the answer: straight through.
        assert!(matches!(&frame(&mut s, &ice(4))[..], [Output::AddIce { .. }]));
        // End-of-candidates is accepted and ignored.
        assert!(frame(&mut s, r#"{"type":"ice","candidate":"","sdpMLineIndex":0}"#).is_empty());
        // So are mDNS candidates (a browser's hidden host address).
        assert!(frame(&mut s, r#"{"type":"ice","candidate":"candidate:7 1 udp 2113937151 0b1c2d3e-aaaa-bbbb-cccc-123456789abc.local 5000 typ host","sdpMLineIndex":0}"#).is_empty());
        // Any other name is refused: the server resolves none.
        assert_eq!(codes(&frame(&mut s, r#"{"type":"ice","candidate":"candidate:8 1 udp 1 evil.example.org 5000 typ host","sdpMLineIndex":0}"#)), vec![ErrorCode::InvalidField]);
    }

    #[test]
    fn at_most_max_ice_candidates_per_join_before_or_after_the_answer() {
        let mut s = offered();
        let max = Limits::default().max_ice_candidates;
        for i in 0..max - 1 {
            assert!(frame(&mut s, &ice(i)).is_empty(), "candidate {i}");
        }
        frame(&mut s, ANSWER);
        assert_eq!(media(&mut s, MediaEvent::AnswerApplied).len(), max - 1);
        assert!(matches!(&frame(&mut s, &ice(max))[..], [Output::AddIce { .. }]), "the last one allowed");
        assert_eq!(codes(&frame(&mut s, &ice(max + 1))), vec![ErrorCode::TooManyCandidates]);
        assert!(s.in_room(), "refused, not removed");
        // A new join starts a new count.
        frame(&mut s, r#"{"type":"leave"}"#);
        frame(&mut s, r#"{"type":"join","room":"r","name":"Ada"}"#);
        s.handle(Input::JoinDone(Ok(())));
        media(&mut s, MediaEvent::Offer { sdp: "v=0".into() });
        assert!(frame(&mut s, &ice(0)).is_empty());
    }

    fn tick(s: &mut Session, ws: u64, media: Option<u64>) -> Vec<Output> {
        s.handle(Input::Tick { ws_silent: Duration::from_secs(ws), media_silent: media.map(Duration::from_secs) })
    }

    #[test]
    fn a_silent_connection_is_closed_after_the_idle_timeout() {
        let mut s = offered();
        assert!(tick(&mut s, 14, Some(0)).is_empty());
        let out = tick(&mut s, 15, Some(0));
        assert_eq!(out[0], Output::Leave);
        assert!(matches!(&out[1], Output::Close(e) if e.code == ErrorCode::IdleTimeout), "{out:?}");
        // Not in a room: closed all the same, nothing to leave.
        let out = tick(&mut Session::new(), 20, None);
        assert!(matches!(&out[..], [Output::Close(e)] if e.code == ErrorCode::IdleTimeout), "{out:?}");
    }

    #[test]
    fn a_participant_whose_media_stopped_leaves_after_the_media_timeout() {
        let mut s = offered();
        assert!(tick(&mut s, 1, Some(14)).is_empty());
        assert!(tick(&mut s, 1, None).is_empty(), "a viewer sends nothing and stays");
        let out = tick(&mut s, 1, Some(15));
        assert_eq!(out[0], Output::Leave);
        assert_eq!(codes(&out), vec![ErrorCode::MediaTimeout]);
        assert!(!s.in_room());
        assert!(tick(&mut s, 1, Some(30)).is_empty(), "left already");
        // Turned off: never.
        let mut s = Session::with_grant(None, Limits { media_timeout: None, ..Limits::default() });
        frame(&mut s, r#"{"type":"join","room":"r","name":"Ada"}"#);
        s.handle(Input::JoinDone(Ok(())));
        assert!(tick(&mut s, 1, Some(3600)).is_empty());
    }

    #[test]
    fn server_candidates_follow_the_offer() {
        let mut s = joined();
        assert!(media(&mut s, MediaEvent::Ice { mline: 0, candidate: "candidate:a".into() }).is_empty());
        assert!(media(&mut s, MediaEvent::Ice { mline: 0, candidate: "candidate:b".into() }).is_empty());
        let out = media(&mut s, MediaEvent::Offer { sdp: "v=0".into() });
        assert_eq!(
            out,
            vec![
                Output::Send(ServerMessage::Offer { sdp: "v=0".into() }),
                Output::Send(ServerMessage::Ice { candidate: "candidate:a".into(), sdp_mline_index: 0 }),
                Output::Send(ServerMessage::Ice { candidate: "candidate:b".into(), sdp_mline_index: 0 }),
            ]
        );
        assert_eq!(
            media(&mut s, MediaEvent::Ice { mline: 0, candidate: "candidate:c".into() }),
            vec![Output::Send(ServerMessage::Ice { candidate: "candidate:c".into(), sdp_mline_index: 0 })]
        );
    }

    #[test]
    fn failed_media_leaves_the_room_with_media_failed() {
        let mut s = offered();
        let out = media(&mut s, MediaEvent::Failed { reason: "ICE failed".into() });
        assert_eq!(out[0], Output::Leave);
        assert_eq!(codes(&out), vec![ErrorCode::MediaFailed]);
        assert!(!s.in_room());
        // Late events of the old room are dropped; a new join works.
        assert!(media(&mut s, MediaEvent::Offer { sdp: "v=0".into() }).is_empty());
        assert!(s.handle(Input::Event(ParticipantEvent::Send(ServerMessage::Speaking { id: None }))).is_empty());
        assert!(matches!(frame(&mut s, r#"{"type":"join","room":"r","name":"Ada"}"#)[..], [Output::Join { .. }]));
    }

    #[test]
    fn a_closed_event_channel_leaves_the_room() {
        let mut s = offered();
        assert_eq!(s.handle(Input::EventsClosed), vec![Output::Leave]);
        assert!(!s.in_room());
        assert!(Session::new().handle(Input::EventsClosed).is_empty());
    }

    #[test]
    fn rung_changes_become_quality_messages() {
        let mut s = offered();
        let info = RungInfo { rung: "low".into(), width: 320, height: 180, fps: 15, kbps: 120, auto: true, estimate_kbps: Some(150), codec: crate::protocol::Codec::H264 };
        assert_eq!(
            media(&mut s, MediaEvent::Rung(info)),
            vec![Output::Send(ServerMessage::Quality { rung: "low".into(), width: 320, height: 180, fps: 15, kbps: 120, auto: true, estimate_kbps: Some(150), codec: crate::protocol::Codec::H264 })]
        );
    }

    #[test]
    fn room_requests_become_commands() {
        let mut s = joined();
        assert_eq!(frame(&mut s, r#"{"type":"set_quality","quality":"low"}"#), vec![Output::SetQuality("low".into())]);
        assert_eq!(frame(&mut s, r#"{"type":"mute","audio":true}"#), vec![Output::Mute { audio: Some(true), video: None }]);
        assert!(matches!(&frame(&mut s, r#"{"type":"set_layout","group":"speaker"}"#)[..], [Output::Layout(r)] if r.group.as_deref() == Some("speaker")));
        assert!(matches!(&frame(&mut s, r#"{"type":"pin","slot":"host","id":"p1"}"#)[..], [Output::Layout(r)] if r.pins.get("host") == Some(&Some("p1".to_string()))));
        // Malformed input gets its code and changes nothing.
        assert_eq!(codes(&frame(&mut s, "{")), vec![ErrorCode::MalformedJson]);
        assert!(s.in_room());
    }
}
