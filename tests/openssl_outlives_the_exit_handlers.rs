//! Regression: a test binary passed all its tests, then aborted at exit
//! with "double free or corruption" (CI, `viewers_share_the_rung_encoders`).
//! OpenSSL's `atexit` handler freed its global state while GStreamer's
//! pooled streaming threads, which had run DTLS, were still alive and ran
//! OpenSSL's per-thread cleanup as they ended (gdb: `OPENSSL_cleanup` called
//! from `exit` with about 130 such threads left). tessera now initialises
//! OpenSSL first with `OPENSSL_INIT_NO_ATEXIT`, so no later initialisation
//! (the DTLS plugin's) installs that handler.
//!
//! A child process registers an exit handler before `media::init`, so it
//! runs after any handler registered later, then initialises OpenSSL the
//! way the DTLS plugin does; at exit the handler asks OpenSSL whether it
//! still works (after `OPENSSL_cleanup` it refuses to initialise).

use std::process::Command;

const CHILD: &str = "TESSERA_OPENSSL_EXIT_CHILD";
const NAME: &str = "openssl_outlives_the_exit_handlers";

type Init = unsafe extern "C" fn(u64, *const libc::c_void) -> libc::c_int;

fn openssl(symbol: &std::ffi::CStr) -> Init {
    // SAFETY: dlopen/dlsym with NUL-terminated names; both symbols looked
    // up have the signature `int f(uint64_t opts, const void *settings)`.
    unsafe {
        let lib = libc::dlopen(c"libssl.so.3".as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        assert!(!lib.is_null(), "libssl.so.3 (GStreamer's DTLS plugin links it) must load");
        let sym = libc::dlsym(lib, symbol.as_ptr());
        assert!(!sym.is_null(), "{symbol:?} not found");
        std::mem::transmute::<*mut libc::c_void, Init>(sym)
    }
}

extern "C" fn report_at_exit() {
    // SAFETY: OpenSSL's documented init call; 1 means it still works.
    let ok = unsafe { openssl(c"OPENSSL_init_crypto")(0, std::ptr::null()) } == 1;
    let line = if ok { "openssl usable at exit: yes\n" } else { "openssl usable at exit: no\n" };
    // SAFETY: writing a static buffer to stderr.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

#[test]
fn openssl_outlives_the_exit_handlers() {
    if std::env::var_os(CHILD).is_some() {
        // SAFETY: registering a plain extern "C" function.
        assert_eq!(unsafe { libc::atexit(report_at_exit) }, 0);
        tessera::media::init().expect("GStreamer initialises");
        // What the DTLS plugin does when it first makes a DTLS context.
        // SAFETY: OpenSSL's init call with no options and no settings.
        assert_eq!(unsafe { openssl(c"OPENSSL_init_ssl")(0, std::ptr::null()) }, 1);
        return;
    }
    let out = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .expect("the child runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {:?}\n{stderr}", out.status);
    assert!(
        stderr.contains("openssl usable at exit: yes"),
        "OpenSSL's exit handler ran (it frees state threads may still use):\n{stderr}"
    );
}
