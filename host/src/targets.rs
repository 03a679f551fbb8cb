//! The targets a component implements, looked up by name. The list comes from the component's
//! `targets()` call ([`crate::runtime::Runtime::targets`]); the host keeps no copy of its own,
//! so a component that adds a target needs no change here.

use crate::runtime::{Target, TargetInfo};

/// A name that is not one of the component's targets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown target `{name}`; expected one of: {expected}")]
pub struct UnknownTarget {
    /// The name asked for.
    pub name: String,
    /// The component's target names, comma-separated, in its order.
    pub expected: String,
}

/// The component's targets ([`TargetInfo`]), in the order it lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets(Vec<TargetInfo>);

impl Targets {
    /// The list as `targets()` returned it.
    pub fn new(list: Vec<TargetInfo>) -> Self {
        Targets(list)
    }

    /// Every target, in the component's order.
    pub fn all(&self) -> &[TargetInfo] {
        &self.0
    }

    /// The target called `name` (`target-info.name`, e.g. `azure-iot`). Errors:
    /// [`UnknownTarget`], listing the component's names.
    pub fn find(&self, name: &str) -> Result<&TargetInfo, UnknownTarget> {
        self.0
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| UnknownTarget {
                name: name.to_string(),
                expected: self.names().join(", "),
            })
    }

    /// The entry for `target`, if the component lists it.
    pub fn get(&self, target: Target) -> Option<&TargetInfo> {
        self.0.iter().find(|t| t.target == target)
    }

    /// The component's target names, in its order.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|t| t.name.as_str()).collect()
    }

    /// Every export format of any target, each once, in the order first listed.
    pub fn export_formats(&self) -> Vec<&str> {
        let mut formats: Vec<&str> = Vec::new();
        for format in self.0.iter().flat_map(|t| &t.export_formats) {
            if !formats.contains(&format.as_str()) {
                formats.push(format);
            }
        }
        formats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(target: Target, name: &str, formats: &[&str]) -> TargetInfo {
        TargetInfo {
            target,
            name: name.into(),
            summary: String::new(),
            mints_credentials: false,
            export_formats: formats.iter().map(|f| f.to_string()).collect(),
            required_parameters: Vec::new(),
        }
    }

    #[test]
    fn names_resolve_and_unknown_ones_list_the_components_names() {
        let targets = Targets::new(vec![
            info(Target::Arc, "arc", &["wireguard"]),
            info(Target::Userdata, "userdata", &[]),
            info(Target::AzureIot, "azure-iot", &["pem", "aziot"]),
            info(Target::AwsIot, "aws-iot", &["pem", "aws-iot"]),
        ]);
        assert_eq!(targets.find("arc").unwrap().target, Target::Arc);
        assert_eq!(targets.get(Target::Userdata).unwrap().name, "userdata");
        assert!(targets.get(Target::Inventory).is_none());
        assert_eq!(
            targets.find("azure").unwrap_err().to_string(),
            "unknown target `azure`; expected one of: arc, userdata, azure-iot, aws-iot"
        );
        assert_eq!(
            targets.export_formats(),
            ["wireguard", "pem", "aziot", "aws-iot"]
        );
    }
}
