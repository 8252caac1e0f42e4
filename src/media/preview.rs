//! `tessera preview`: render a layout to a PNG as the mixer would, with
//! test patterns and sample names. It uses the mixer's own geometry
//! (slot rectangles, borders, z-order), crop/letterbox chain and labels.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use gst::prelude::*;

use super::mixer::{inner_rect, label_font_px, label_markup, tile_caps, zorder, LABEL_OVERLAY};
use crate::layouts::{assign_with_shares, Fit, Layout, MixerSettings, Role};

/// Sample names, some with non-Latin scripts and markup characters.
const NAMES: [&str; 10] = [
    "Ada Lovelace", "Grace Hopper", "Zoë Ångström", "Alan <Turing>", "Margaret Hamilton",
    "李小龍", "Edsger Dijkstra", "Katherine Johnson", "Ørjan & Co", "Barbara Liskov",
];
const PATTERNS: [&str; 6] = ["smpte", "ball", "snow", "checkers-8", "pinwheel", "spokes"];

/// Render `layout` with `n` sample participants to `out` (PNG). A layout
/// with `share` slots shows a sample shared screen (a 4:3 test card,
/// letterboxed) in each, shared by the first participants.
pub fn render(m: &MixerSettings, layout: &Layout, n: usize, out: &Path) -> Result<()> {
    super::init()?;
    let ids: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    // Pin the first participants to the reserved slots, in slot order.
    let mut pins = BTreeMap::new();
    for (i, key) in layout.slots.iter().filter_map(|s| if let Role::Reserved(k) = &s.role { Some(k) } else { None }).enumerate() {
        if let Some(id) = ids.get(i) {
            pins.insert(key.clone(), id.clone());
        }
    }
    let shares = layout.slots.iter().filter(|s| s.role == Role::Share).count().min(n.max(1));
    let (cameras, screens) = assign_with_shares(layout, &refs, None, &pins, shares);
    // (sample index, slot, a shared screen?)
    let placed: Vec<(usize, usize, bool)> = cameras.into_iter().map(|(p, s)| (p, s, false)).chain(screens.into_iter().map(|(p, s)| (p, s, true))).collect();
    let (w, h) = (m.width, m.height);
    let mut desc = format!(
        "compositor name=comp background=black ! videoconvert ! pngenc ! filesink name=out \
         videotestsrc num-buffers=1 pattern=solid-color foreground-color={bg} ! video/x-raw,format=I420,width={w},height={h} ! comp.sink_0 ",
        bg = 0xff00_0000u32 | m.background.0
    );
    let mut pads: Vec<(String, crate::layout::Rect, u32)> = Vec::new();
    let mut k = 1;
    for (pi, si, screen) in &placed {
        let slot = &layout.slots[*si];
        let rect = slot.rect(w, h);
        let (inner, b) = inner_rect(rect, slot.border);
        if b > 0 {
            desc += &format!(
                "videotestsrc num-buffers=1 pattern=solid-color foreground-color={c} ! video/x-raw,format=I420,width={rw},height={rh} ! comp.sink_{k} ",
                c = 0xff00_0000u32 | slot.border_color.0,
                rw = rect.width,
                rh = rect.height
            );
            pads.push((format!("sink_{k}"), rect, zorder(slot.z) - 1));
            k += 1;
        }
        // Alternate 16:9 and 4:3 sources so letterboxing and cropping show.
        let (sw, sh) = if *screen { (1024, 768) } else if pi % 2 == 0 { (640, 360) } else { (640, 480) };
        let crop = match slot.fit {
            Fit::Crop if !*screen => format!("{}/{}", inner.width, inner.height),
            _ => "0/1".to_string(),
        };
        desc += &format!(
            "videotestsrc num-buffers=1 pattern={p} ! video/x-raw,width={sw},height={sh} ! videoconvert ! aspectratiocrop aspect-ratio={crop} \
             ! videoscale add-borders=true ! capsfilter name=caps{k} ! {label} name=label{k} ! comp.sink_{k} ",
            p = if *screen { "smpte" } else { PATTERNS[pi % PATTERNS.len()] },
            label = LABEL_OVERLAY,
        );
        pads.push((format!("sink_{k}|{pi}|{}", if *screen { "screen" } else { "camera" }), inner, zorder(slot.z)));
        k += 1;
    }
    let pipeline = gst::parse::launch(&desc)
        .with_context(|| format!("preview pipeline: {desc}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("preview is not a pipeline"))?;
    pipeline.by_name("out").context("filesink")?.set_property("location", out.to_string_lossy().to_string());
    let comp = pipeline.by_name("comp").context("compositor")?;
    for (name, r, z) in &pads {
        let mut parts = name.split('|');
        let pad_name = parts.next().unwrap_or_default();
        let pad = comp.static_pad(pad_name).with_context(|| format!("compositor pad {pad_name}"))?;
        pad.set_property("xpos", r.x as i32);
        pad.set_property("ypos", r.y as i32);
        pad.set_property("width", r.width as i32);
        pad.set_property("height", r.height as i32);
        pad.set_property("zorder", *z);
        if let (Some(pi), Some(kind)) = (parts.next(), parts.next()) {
            let k = &pad_name["sink_".len()..];
            let pi: usize = pi.parse().unwrap_or(0);
            pipeline.by_name(&format!("caps{k}")).context("caps")?.set_property("caps", tile_caps(r.width, r.height));
            let label = pipeline.by_name(&format!("label{k}")).context("label")?;
            let px = label_font_px(r.height);
            let name = NAMES[pi % NAMES.len()];
            let text = if kind == "screen" { label_markup(&format!("{name} (screen)"), m.names, false, r.width, px) } else { label_markup(name, m.names, pi == 1, r.width, px) };
            label.set_property("text", text);
            label.set_property("font-desc", format!("{} {px}px", m.font));
        }
    }
    run_to_eos(&pipeline, "the preview")
}

/// Play a finite pipeline until EOS (20 s at most), then bring it to NULL.
fn run_to_eos(pipeline: &gst::Pipeline, what: &str) -> Result<()> {
    pipeline.set_state(gst::State::Playing).with_context(|| format!("{what} refused to play"))?;
    let bus = pipeline.bus().context("bus")?;
    let msg = bus.timed_pop_filtered(gst::ClockTime::from_seconds(20), &[gst::MessageType::Eos, gst::MessageType::Error]);
    let _ = pipeline.set_state(gst::State::Null);
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => Ok(()),
        Some(gst::MessageView::Error(e)) => bail!("{what} failed: {} ({:?})", e.error(), e.debug()),
        _ => bail!("{what} timed out"),
    }
}

/// Rasterise an SVG file to a PNG next to it (the benchmark plots), with
/// GStreamer's librsvg decoder.
pub fn svg_to_png(svg: &Path, png: &Path) -> Result<()> {
    super::init()?;
    let pipeline = gst::Pipeline::new();
    let src = super::make("filesrc")?;
    src.set_property("location", svg.to_string_lossy().to_string());
    let chain = [src, super::make("rsvgdec")?, super::make("videoconvert")?, super::make("pngenc")?, super::make("filesink")?];
    chain[4].set_property("location", png.to_string_lossy().to_string());
    pipeline.add_many(&chain).context("plot pipeline")?;
    gst::Element::link_many(&chain).context("linking the plot pipeline")?;
    run_to_eos(&pipeline, &format!("rendering {}", svg.display()))
}
