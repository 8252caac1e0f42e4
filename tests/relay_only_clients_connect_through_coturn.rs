//! Clients that can only reach the server through a TURN relay still get
//! the room: the server hands out TURN REST credentials made from coturn's
//! shared secret in `joined`, two relay-only bots (iceTransportPolicy
//! relay) connect through a real coturn, see each other's colours, hear
//! each other's tones at full frame rate, and their selected candidate pair
//! is a relay one. With a secret coturn does not share, a relay-only
//! client is told why it has no media instead of waiting forever.

mod common;

use std::time::Duration;

use common::*;
use tessera::tools::bot::{Bot, BotOptions};

fn relay_bot(url: &str, room: &str, name: &str, color: u32, tone: f64) -> BotOptions {
    BotOptions { relay_only: true, ..bot_options(url, room, name, color, tone) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_clients_connect_through_coturn() {
    init_tracing();
    let turn = Coturn::start("north-wind");
    let server = ChildServer::spawn(&["--turn", &turn.url(), "--turn-secret", "north-wind", "--turn-ttl", "600"]);

    let a = Bot::connect(relay_bot(&server.url, "relay", "a", 0xff0000, 440.0)).await.expect("a connects");
    let b = Bot::connect(relay_bot(&server.url, "relay", "b", 0x0000ff, 880.0)).await.expect("b connects");
    for bot in [&a, &b] {
        wait_receiving(bot, Duration::from_secs(15)).await;
        assert!(bot.wait_until(Duration::from_secs(5), |b| b.layout().map(|l| l.1.len()) == Some(2)).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (bot, other, other_color, other_tone, own_tone) in [(&a, &b, 0x0000ff, 880.0, 440.0), (&b, &a, 0xff0000, 440.0, 880.0)] {
        let fps = fps_over(bot, 3.0).await;
        assert!(fps >= 25.0, "{fps:.1} fps through the relay");
        let (local, remote) = bot.selected_pair().await.expect("a selected candidate pair");
        assert_eq!(local, "relay", "the bot's side of the pair is its TURN relay (remote: {remote})");
        let id = other.id().expect("joined");
        let tile = bot.tiles_seen().into_iter().find(|t| t.id == id).expect("the other's tile");
        assert!(color_close(tile.center_rgb, other_color, 48), "{:?} in the other's tile", tile.center_rgb);
        let heard = bot.level_db(other_tone).expect("audio");
        let own = bot.level_db(own_tone).expect("audio");
        assert!(heard > own + 20.0, "hears the other at {heard:.1} dB, itself at {own:.1} dB");
        assert!(bot.errors().is_empty(), "{:?}", bot.errors());
    }
    a.leave().await;
    b.leave().await;

    // A server whose secret is not coturn's: the credentials are refused,
    // no relay candidate exists, and the client hears why.
    let wrong = ChildServer::spawn(&["--turn", &turn.url(), "--turn-secret", "south-wind"]);
    let c = Bot::connect(relay_bot(&wrong.url, "relay", "c", 0x00ff00, 660.0)).await.expect("c connects");
    let told = c.wait_until(Duration::from_secs(15), |c| !c.errors().is_empty()).await;
    assert!(told, "no error in 15 s");
    assert!(!c.is_connected());
    let errors = c.errors();
    assert!(errors.iter().any(|(_, m)| m.contains("TURN") && m.contains("turn_secret")), "{errors:?}");
    c.leave().await;
}
