//! `tessera preview` renders a layout to a PNG of the canvas size whose
//! regions match the layout: borders where the file puts them, background
//! where no slot is, pictures inside the slots.

use std::path::Path;
use std::process::Command;

fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let ch = info.color_type.samples();
    let rgb: Vec<u8> = buf[..info.buffer_size()].chunks(ch).flat_map(|p| [p[0], p[1], p[2]]).collect();
    (info.width, info.height, rgb)
}

fn px(img: &(u32, u32, Vec<u8>), x: u32, y: u32) -> [u8; 3] {
    let i = ((y * img.0 + x) * 3) as usize;
    [img.2[i], img.2[i + 1], img.2[i + 2]]
}

fn near(a: [u8; 3], b: [u8; 3]) -> bool {
    (0..3).all(|i| (a[i] as i32 - b[i] as i32).abs() <= 24)
}

#[test]
fn preview_renders_the_layout() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!("tessera-preview-{}.png", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .current_dir(root)
        .args(["preview", "pipelines/layouts/custom-example.toml", "--layout", "panel", "--participants", "5", "-o"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let img = decode(&out);
    assert_eq!((img.0, img.1), (1280, 720), "canvas size from mixer.toml");
    // Host slot: x 0.02..0.32, y 0.04..0.44, border 4 px #3f63e0.
    assert!(near(px(&img, 26, 100), [0x3f, 0x63, 0xe0]), "host border: {:?}", px(&img, 26, 100));
    // Floor slot border (2 px white) from x = 0.34 * 1280, rounded to even: 434.
    assert!(near(px(&img, 435, 200), [255, 255, 255]), "floor border: {:?}", px(&img, 435, 200));
    // Between the host slot and the floor slot: background (black).
    assert!(near(px(&img, 422, 100), [0, 0, 0]), "gap: {:?}", px(&img, 422, 100));
    // Below the host slot (ends at y 316), above the guest row (from 518): background.
    assert!(near(px(&img, 200, 400), [0, 0, 0]), "below host: {:?}", px(&img, 200, 400));
    // The guest slots hold pictures: not all background.
    let guest = (40..290).step_by(10).filter(|&x| !near(px(&img, x, 600), [0, 0, 0])).count();
    assert!(guest > 5, "guest slot looks empty");
    let _ = std::fs::remove_file(&out);
}
