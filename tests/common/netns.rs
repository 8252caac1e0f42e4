//! The link tests' namespaces: [`tessera::tools::netns`], with the bot
//! being this build's binary.

pub use tessera::tools::netns::Netns;

/// `tessera bot` in the namespace behind the router (this build's binary).
pub struct NsBot(tessera::tools::netns::NsBot);

impl NsBot {
    pub fn start(ns: &Netns, url: &str, room: &str, extra: &[&str]) -> NsBot {
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_tessera"));
        NsBot(tessera::tools::netns::NsBot::start(bin, ns, url, room, extra).unwrap_or_else(|e| panic!("the namespaced bot does not start: {e}")))
    }

    pub fn report(&self) -> serde_json::Value {
        self.0.report()
    }
}

/// The lossy-link tests' room: a router namespace whose loss rules work
/// (nftables), a server listening on the host side of it, and a bot on the
/// host in `room` (sending, decoding nothing). No loss yet.
pub async fn lossy_router_room(room: &str, transport: tessera::config::Transport) -> (Netns, tessera::server::Running, tessera::tools::bot::Bot) {
    let ns = Netns::create().unwrap_or_else(|e| panic!("this test needs network namespaces and veth (run as root with iproute2 installed): {e}"));
    ns.loss(0, true).unwrap_or_else(|e| panic!("this test needs nftables (scripts/deps.sh --browser installs it): {e}"));
    let network = tessera::config::Network { ice_addresses: vec![ns.host_ip.clone()], ..Default::default() };
    let media = tessera::media::MediaConfig { network, transport, ..super::media_config() };
    super::init_tracing();
    let config = super::listening_on(&format!("{}:0", ns.host_ip));
    let server = tessera::server::start(tessera::server::ServerConfig { config, media, ..Default::default() }).expect("server starts");
    let bot = super::busy_bot(&server.ws_url(), room, "free", 440.0);
    let free = tessera::tools::bot::Bot::connect(tessera::tools::bot::BotOptions { decode: false, ice_addresses: vec![ns.host_ip.clone()], ..bot })
        .await
        .expect("free bot connects");
    (ns, server, free)
}
