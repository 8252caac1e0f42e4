# Multi-stage build: compile on Debian 12, run on bookworm-slim.
# Package lists mirror scripts/deps.sh.
FROM rust:1-bookworm AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev \
      libnice-dev libopus-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
RUN cargo build --release --locked
# libsrtp2 on OpenSSL: a quarter of the SRTP cost of Debian's NSS build
# (src/media/srtp.rs); the server loads it from /usr/local/lib/tessera.
COPY scripts/build-libsrtp.sh scripts/
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libssl-dev \
    && rm -rf /var/lib/apt/lists/* && scripts/build-libsrtp.sh /out

FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly \
      gstreamer1.0-nice gstreamer1.0-libav gstreamer1.0-x libnice10 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/tessera /usr/local/bin/tessera
COPY --from=build /out/libsrtp2.so.1 /usr/local/lib/tessera/libsrtp2.so.1
COPY web /srv/tessera/web
COPY pipelines /srv/tessera/pipelines
WORKDIR /srv/tessera
EXPOSE 8080
# ICE needs reachable UDP ports: run with --network host, or publish the
# --udp-ports range. Browsers on other machines need HTTPS: add --tls-cert and
# --tls-key (docs/deploy.md, docker-compose.yml).
ENTRYPOINT ["tessera"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--udp-ports", "40000-40999"]
