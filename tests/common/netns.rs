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
