//! Composition of components into one, with `wac-graph` (bytecodealliance/wac): each import of
//! a part is plugged with the export of the same name of another part; imports no part
//! exports (WASI's) stay imports of the composed component, one per name.
//!
//! An import whose name or type does not match an export stays open silently in `wac plug`;
//! here every plugged import is matched by its exact name, and the end-to-end tests check the
//! composed component's remaining imports.

use std::collections::BTreeMap;
use std::path::Path;
use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions, NodeId};

/// One component of a composition.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    /// The package name it is registered under, e.g. `soracom:krypton-guest` (names only the
    /// part inside the composition).
    pub name: &'a str,
    /// The component file.
    pub wasm: &'a Path,
}

/// Composes `parts` into one component whose exports are those of `parts[root]`. Each part is
/// instantiated once; each of its imports that another part exports (the same name, version
/// included) is given that export. Components are embedded byte for byte (wac-graph's
/// `define_components`), so a part can be found again inside the result.
///
/// Errors, as text: a file that cannot be read or is not a component, two parts exporting the
/// same name, an export whose type does not fit the import, or a composition that does not
/// validate.
pub fn compose(parts: &[Part<'_>], root: usize) -> Result<Vec<u8>, String> {
    let mut graph = CompositionGraph::new();
    let mut packages = Vec::new();
    for part in parts {
        let package = Package::from_file(part.name, None, part.wasm, graph.types_mut())
            .map_err(|e| format!("{}: {e:#}", part.wasm.display()))?;
        let id = graph
            .register_package(package)
            .map_err(|e| format!("{}: {e:#}", part.name))?;
        packages.push(id);
    }
    let instances: Vec<NodeId> = packages.iter().map(|&p| graph.instantiate(p)).collect();

    // Which part exports each name.
    let mut exporters: BTreeMap<String, usize> = BTreeMap::new();
    for (i, &package) in packages.iter().enumerate() {
        for name in graph.types()[graph[package].ty()].exports.keys() {
            if let Some(other) = exporters.insert(name.clone(), i) {
                return Err(format!(
                    "`{name}` is exported by both {} and {}",
                    parts[other].name, parts[i].name
                ));
            }
        }
    }
    for (i, &package) in packages.iter().enumerate() {
        let imports: Vec<String> = graph.types()[graph[package].ty()]
            .imports
            .keys()
            .cloned()
            .collect();
        for name in imports {
            let Some(&from) = exporters.get(&name) else {
                continue;
            };
            let export = graph
                .alias_instance_export(instances[from], &name)
                .map_err(|e| format!("{} export `{name}`: {e:#}", parts[from].name))?;
            graph
                .set_instantiation_argument(instances[i], &name, export)
                .map_err(|e| {
                    format!(
                        "plugging {}'s `{name}` into {}: {e:#}",
                        parts[from].name, parts[i].name
                    )
                })?;
        }
    }
    let exports: Vec<String> = graph.types()[graph[packages[root]].ty()]
        .exports
        .keys()
        .cloned()
        .collect();
    for name in exports {
        let export = graph
            .alias_instance_export(instances[root], &name)
            .map_err(|e| format!("{} export `{name}`: {e:#}", parts[root].name))?;
        graph
            .export(export, &name)
            .map_err(|e| format!("exporting `{name}`: {e:#}"))?;
    }
    graph
        .encode(EncodeOptions::default())
        .map_err(|e| format!("encoding the composition: {e:#}"))
}
