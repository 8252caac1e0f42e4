//! A bot that joins again when it loses its room, as the web client does:
//! the server closed its WebSocket (its node died or drained, or the room
//! moved) or its join was refused for a while (`cluster_unavailable` while
//! a dead node's lease lapses). It tries the next server of its list every
//! [`RETRY`], and notes when it lost the room and when the mix came back.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::bot::{Bot, BotOptions};

/// Time between two attempts to join again.
pub const RETRY: Duration = Duration::from_millis(250);
/// How long one attempt waits for `joined`.
const JOIN_WAIT: Duration = Duration::from_secs(3);

/// One loss of the room and its recovery.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rejoin {
    /// Milliseconds since the bot started.
    pub lost_at_ms: u64,
    /// When mixed video came again (None: not yet).
    pub receiving_at_ms: Option<u64>,
    /// Joins tried until one was taken.
    pub attempts: u32,
    /// The server that took it.
    pub server: String,
    #[serde(skip)]
    pub lost: Option<Instant>,
    #[serde(skip)]
    pub receiving: Option<Instant>,
}

pub struct Rejoiner {
    opts: BotOptions,
    servers: Vec<String>,
    next: usize,
    bot: Option<Bot>,
    started: Instant,
    pub history: Vec<Rejoin>,
}

impl Rejoiner {
    /// Join through `servers[0]` (`opts.server` is ignored).
    pub async fn connect(opts: BotOptions, servers: Vec<String>) -> Result<Rejoiner> {
        anyhow::ensure!(!servers.is_empty(), "a rejoining bot needs at least one server");
        let bot = Bot::connect(BotOptions { server: servers[0].clone(), ..opts.clone() }).await?;
        Ok(Rejoiner { opts, servers, next: 1, bot: Some(bot), started: Instant::now(), history: Vec::new() })
    }

    /// The bot in the room now (None while joining again).
    pub fn bot(&self) -> Option<&Bot> {
        self.bot.as_ref()
    }

    fn ms(&self, at: Instant) -> u64 {
        at.duration_since(self.started).as_millis() as u64
    }

    /// Lost: the WebSocket closed, or the join was refused.
    fn lost(b: &Bot) -> bool {
        b.closed() || (b.id().is_none() && !b.errors().is_empty())
    }

    /// Watch the bot for `period`: when it loses the room, join again
    /// (each attempt through the next server) until it receives mixed
    /// video again or `period` ends.
    pub async fn tend(&mut self, period: Duration) {
        let until = Instant::now() + period;
        while Instant::now() < until {
            if let Some(r) = self.history.last_mut().filter(|r| r.receiving_at_ms.is_none()) {
                if self.bot.as_ref().is_some_and(|b| b.stats().frames > 0) {
                    let now = Instant::now();
                    r.receiving_at_ms = Some(now.duration_since(self.started).as_millis() as u64);
                    r.receiving = Some(now);
                }
            }
            let lost = self.bot.as_ref().is_none_or(Rejoiner::lost);
            if !lost {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let at = Instant::now();
            if self.history.last().is_none_or(|r| r.receiving_at_ms.is_some() || self.bot.is_some()) {
                let lost_at_ms = self.ms(at);
                tracing::info!("bot {}: lost the room at {lost_at_ms} ms; joining again", self.opts.name);
                self.history.push(Rejoin { lost_at_ms, receiving_at_ms: None, attempts: 0, server: String::new(), lost: Some(at), receiving: None });
            }
            if let Some(b) = self.bot.take() {
                b.disconnect().await;
            }
            while Instant::now() < until {
                let server = self.servers[self.next % self.servers.len()].clone();
                self.next += 1;
                if let Some(r) = self.history.last_mut() {
                    r.attempts += 1;
                }
                let tried = Instant::now();
                if let Ok(b) = Bot::connect(BotOptions { server: server.clone(), ..self.opts.clone() }).await {
                    if b.wait_until(JOIN_WAIT, |b| b.id().is_some() || Rejoiner::lost(b)).await && b.id().is_some() {
                        if let Some(r) = self.history.last_mut() {
                            r.server = server;
                        }
                        self.bot = Some(b);
                        break;
                    }
                    b.disconnect().await;
                }
                tokio::time::sleep(RETRY.saturating_sub(tried.elapsed())).await;
            }
        }
    }

    /// Leave the room.
    pub async fn leave(mut self) {
        if let Some(b) = self.bot.take() {
            b.leave().await;
        }
    }
}
