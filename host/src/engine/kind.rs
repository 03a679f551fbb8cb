//! What a component file is, from its first bytes, and what a build without the compiler says
//! of one it cannot load. The engine needs this before it compiles (a precompiled artifact or a
//! stray file is never handed to Cranelift), and the component layer re-exports it.

/// The target triple this binary was built for (cargo's `TARGET`, passed by `host/build.rs`).
/// An artifact loads only when its architecture and operating system are this one's.
pub const HOST_TARGET: &str = env!("KRYPTON_BUILD_TARGET");

/// What the first bytes of a component file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A WebAssembly component (`\0asm`, WebAssembly Core Specification §5.5.16).
    Component,
    /// A component precompiled by wasmtime (an ELF file wasmtime marks as its own; wasmtime's
    /// `Engine::detect_precompiled`).
    Precompiled,
    /// Anything else.
    Other,
}

/// The kind of a component file from its bytes.
pub fn kind(bytes: &[u8]) -> FileKind {
    if bytes.starts_with(b"\0asm") {
        FileKind::Component
    } else if matches!(
        wasmtime::Engine::detect_precompiled(bytes),
        Some(wasmtime::Precompiled::Component)
    ) {
        FileKind::Precompiled
    } else {
        FileKind::Other
    }
}

/// The command that makes a precompiled component for this host, for messages.
pub fn compile_hint() -> String {
    format!(
        "precompile and sign it on a build machine with the full krypton-host: `krypton-host \
         compile COMPONENT.wasm --target {HOST_TARGET} --out FILE.cwasm --signing-key KEY`, then \
         give FILE.cwasm (with FILE.cwasm.sig beside it) and the trusted public key \
         (--trusted-public-key, or `trusted_public_key` in the daemon's configuration)"
    )
}

/// Why the gateway build refuses `bytes` handed to it as a component to compile, and what to
/// do instead.
pub fn gateway_refusal(bytes: &[u8]) -> String {
    match kind(bytes) {
        FileKind::Component => format!(
            "this gateway build of krypton-host has no compiler and runs only signed precompiled \
             components (.cwasm), not a .wasm: {}",
            compile_hint()
        ),
        FileKind::Precompiled => "a precompiled component loads only from its file, with its \
                                  signature and a trusted key"
            .to_string(),
        FileKind::Other => format!(
            "not a precompiled component (nor a WebAssembly component); {}",
            compile_hint()
        ),
    }
}
