//! Figure 2: loading a new version, and the cost of one call.
//!
//! * `jitCompile`: `Runtime::load` with the compile cache off (Cranelift compiles the
//!   component, then it is linked);
//! * `cacheHit`: `Runtime::load` of a version in the compile cache (read, SHA-256 check,
//!   `Component::deserialize`, link);
//! * `precompiledFile` / `precompiledMemory`: `Component::deserialize_file` (the file is
//!   mapped) and `Component::deserialize` of an `Engine::precompile_component` artifact, on an
//!   engine configured as the host's, without linking;
//! * `instantiateCall`: `Runtime::version` on a loaded component: a fresh store with the
//!   sandbox limits, instantiation, one call of the `version` export.

use crate::stats::{Samples, round3};
use crate::{Bench, runtime};
use krypton_host::component::DEFAULT_COMPONENT;
use krypton_host::engine::{CachePolicy, Runtime};
use serde_json::{Value, json};
use std::time::Instant;

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

/// Measure figure 2. Errors: a load or a call failed.
pub fn measure(bench: &Bench, tokio: &tokio::runtime::Runtime) -> anyhow::Result<Value> {
    let sizes = &bench.sizes;
    let uncached = Runtime::with_options(crate::options().sandbox_limits(), CachePolicy::Off)?;
    let mut jit = Samples::default();
    for _ in 0..sizes.jit_loads {
        let started = Instant::now();
        uncached.load(DEFAULT_COMPONENT)?;
        jit.push(ms(started));
    }
    drop(uncached);

    let cached = runtime(&bench.dir("load-cache")?)?;
    cached.load(DEFAULT_COMPONENT)?;
    let mut hit = Samples::default();
    for _ in 0..sizes.warm_loads {
        let started = Instant::now();
        cached.load(DEFAULT_COMPONENT)?;
        hit.push(ms(started));
    }

    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    let engine = wasmtime::Engine::new(&config)?;
    let artifact = engine.precompile_component(DEFAULT_COMPONENT)?;
    let file = bench.work.path().join("component.cwasm");
    std::fs::write(&file, &artifact)?;
    let mut from_file = Samples::default();
    let mut from_memory = Samples::default();
    for _ in 0..sizes.warm_loads {
        let started = Instant::now();
        // SAFETY: the file was written just above, in this process's private (0700) work
        // directory, with what `Engine::precompile_component` produced for an engine of this
        // same configuration; nothing else writes it.
        #[allow(unsafe_code)]
        let component = unsafe { wasmtime::component::Component::deserialize_file(&engine, &file) };
        component?;
        from_file.push(ms(started));
        let started = Instant::now();
        // SAFETY: the bytes are what `Engine::precompile_component` produced just above for
        // this engine.
        #[allow(unsafe_code)]
        let component = unsafe { wasmtime::component::Component::deserialize(&engine, &artifact) };
        component?;
        from_memory.push(ms(started));
    }

    let pre = cached.load(DEFAULT_COMPONENT)?;
    let mut call = Samples::default();
    tokio.block_on(async {
        for _ in 0..sizes.overhead_calls.min(10) {
            cached.version(&pre).await?;
        }
        for _ in 0..sizes.overhead_calls {
            let started = Instant::now();
            cached.version(&pre).await?;
            call.push(ms(started));
        }
        anyhow::Ok(())
    })?;

    println!("loading a new version:");
    println!("  JIT compile + link      {}", jit.text());
    println!("  compile-cache hit       {}", hit.text());
    println!("  precompiled, from file  {}", from_file.text());
    println!("  precompiled, in memory  {}", from_memory.text());
    println!(
        "  instantiate + call      median {:.1} µs, p99 {:.1} µs (n {})",
        call.median() * 1000.0,
        call.p99() * 1000.0,
        call.len()
    );
    Ok(json!({
        "componentBytes": DEFAULT_COMPONENT.len(),
        "artifactBytes": artifact.len(),
        "jitCompile": jit.json(),
        "cacheHit": hit.json(),
        "precompiledFile": from_file.json(),
        "precompiledMemory": from_memory.json(),
        "instantiateCall": call.json(),
        "instantiateCallMedianUs": round3(call.median() * 1000.0),
        "instantiateCallP99Us": round3(call.p99() * 1000.0),
        "jitOverPrecompiled": round3(jit.median() / from_file.median()),
    }))
}
