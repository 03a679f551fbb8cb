//! The targets a component implements, looked up by name. The list comes from the component's
//! `targets()` call ([`crate::runtime::Runtime::targets`]); the host keeps no copy of its own,
//! so a component that adds a target needs no change here.
//!
//! A component is code the host did not write (a signed build may still be buggy), so its list
//! is checked once, when it is loaded ([`Targets::checked`]): bounded, each name the spelling of
//! its `target` enum case (a WIT identifier: `[a-z][a-z0-9]*` words joined by `-`, at most
//! [`MAX_NAME_BYTES`] bytes), each target and name listed once, export formats of the same
//! shape, and every other text short and free of control characters. A list that fails is
//! refused as a whole, so a name is safe to print, to compare and to use as a bundle name.

use crate::runtime::{Target, TargetInfo};
use std::collections::HashSet;

/// Most entries a `targets()` list may hold (the contract's `target` enum has 8 cases, and
/// each may be listed once).
pub const MAX_TARGETS: usize = 64;
/// Longest target name, export format or parameter name, bytes (as the secret store's names).
pub const MAX_NAME_BYTES: usize = 64;
/// Longest summary, parameter description or parameter example, bytes.
pub const MAX_TEXT_BYTES: usize = 256;
/// Most export formats, and most required parameters, of one target.
pub const MAX_ENTRIES_PER_TARGET: usize = 16;

/// A `targets()` list the host refuses; the text says which entry and why, with the
/// component's own text escaped and cut short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the component's targets() {0}")]
pub struct InvalidTargets(String);

/// `text` for an error message: at most 64 characters, escaped (`\u{1b}`, `\n`, ...).
pub(crate) fn shown(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(64)
        .collect::<String>()
        .escape_debug()
        .to_string();
    if text.chars().nth(64).is_some() {
        out.push_str(&format!("... ({} bytes)", text.len()));
    }
    out
}

/// The contract's spelling of `target` (`AwsCognitoOpenid` -> `aws-cognito-openid`), from the
/// case name of the generated enum: WIT cases are kebab-case words, which the bindings join in
/// UpperCamelCase.
fn case_name(target: Target) -> String {
    let debug = format!("{target:?}");
    let rust = debug.rsplit("::").next().unwrap_or(&debug);
    let mut name = String::new();
    for (i, c) in rust.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('-');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

/// A WIT-style identifier: `[a-z][a-z0-9]*` words joined by single `-`, 1 to
/// [`MAX_NAME_BYTES`] bytes.
pub(crate) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.split('-').all(|word| {
            word.starts_with(|c: char| c.is_ascii_lowercase())
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// A parameter name as Krypton spells request fields (`endpoint`, `thingName`): ASCII letters,
/// digits, `_`, `-`, `.`, starting with a letter, 1 to [`MAX_NAME_BYTES`] bytes.
fn is_parameter_name(name: &str) -> bool {
    name.len() <= MAX_NAME_BYTES
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// One line of text for a listing: at most [`MAX_TEXT_BYTES`] bytes, no control or
/// bidirectional formatting characters.
fn check_text(what: &str, text: &str) -> Result<(), InvalidTargets> {
    text_problem(what, text, MAX_TEXT_BYTES).map_or(Ok(()), |e| Err(InvalidTargets(e)))
}

/// Why `text` (called `what`) is not one printable line of at most `max` bytes (no control or
/// bidirectional formatting characters), or `None` when it is.
pub(crate) fn text_problem(what: &str, text: &str, max: usize) -> Option<String> {
    if text.len() > max {
        return Some(format!(
            "{what} is {} bytes long; at most {max}",
            text.len()
        ));
    }
    if text.chars().any(crate::output::is_unprintable) {
        return Some(format!("{what} `{}` holds control characters", shown(text)));
    }
    None
}

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
    /// The list as given, unchecked (for a list the caller built itself); a list from a
    /// component goes through [`Targets::checked`], as [`crate::lifecycle::list_targets`] does.
    pub fn new(list: Vec<TargetInfo>) -> Self {
        Targets(list)
    }

    /// The list as `targets()` returned it, checked (see the module docs). Errors:
    /// [`InvalidTargets`], naming the first entry at fault.
    pub fn checked(list: Vec<TargetInfo>) -> Result<Self, InvalidTargets> {
        if list.len() > MAX_TARGETS {
            return Err(InvalidTargets(format!(
                "lists {} targets; at most {MAX_TARGETS}",
                list.len()
            )));
        }
        let mut names = HashSet::new();
        let mut cases = HashSet::new();
        for (i, t) in list.iter().enumerate() {
            let at = format!("entry {i}");
            if !is_plain_name(&t.name) {
                return Err(InvalidTargets(format!(
                    "{at}: name `{}` is not a plain name (1-{MAX_NAME_BYTES} bytes of `[a-z0-9-]`, words starting with a letter)",
                    shown(&t.name)
                )));
            }
            let case = case_name(t.target);
            if t.name != case {
                return Err(InvalidTargets(format!(
                    "{at}: name `{}` does not match its target case `{case}`",
                    t.name
                )));
            }
            if !names.insert(t.name.as_str()) || !cases.insert(case) {
                return Err(InvalidTargets(format!(
                    "{at}: `{}` is listed twice",
                    t.name
                )));
            }
            check_text(&format!("{at} (`{}`): summary", t.name), &t.summary)?;
            if t.export_formats.len() > MAX_ENTRIES_PER_TARGET {
                return Err(InvalidTargets(format!(
                    "{at} (`{}`): {} export formats; at most {MAX_ENTRIES_PER_TARGET}",
                    t.name,
                    t.export_formats.len()
                )));
            }
            for (j, format) in t.export_formats.iter().enumerate() {
                if !is_plain_name(format) {
                    return Err(InvalidTargets(format!(
                        "{at} (`{}`): export format `{}` is not a plain name",
                        t.name,
                        shown(format)
                    )));
                }
                if t.export_formats[..j].contains(format) {
                    return Err(InvalidTargets(format!(
                        "{at} (`{}`): export format `{format}` is listed twice",
                        t.name
                    )));
                }
            }
            if t.required_parameters.len() > MAX_ENTRIES_PER_TARGET {
                return Err(InvalidTargets(format!(
                    "{at} (`{}`): {} required parameters; at most {MAX_ENTRIES_PER_TARGET}",
                    t.name,
                    t.required_parameters.len()
                )));
            }
            for (j, p) in t.required_parameters.iter().enumerate() {
                if !is_parameter_name(&p.name)
                    || t.required_parameters[..j].iter().any(|o| o.name == p.name)
                {
                    return Err(InvalidTargets(format!(
                        "{at} (`{}`): required parameter `{}` is not a plain name, or is listed twice",
                        t.name,
                        shown(&p.name)
                    )));
                }
                let what = format!("{at} (`{}`): parameter `{}`", t.name, p.name);
                check_text(&format!("{what}: description"), &p.description)?;
                check_text(&format!("{what}: example"), &p.example)?;
            }
        }
        Ok(Targets(list))
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

    fn refused(list: Vec<TargetInfo>) -> String {
        Targets::checked(list).unwrap_err().to_string()
    }

    #[test]
    fn the_contracts_spelling_of_each_case_comes_from_the_bindings() {
        assert_eq!(case_name(Target::AzureIot), "azure-iot");
        assert_eq!(case_name(Target::AwsCognitoOpenid), "aws-cognito-openid");
        assert_eq!(case_name(Target::SubscriberMetadata), "subscriber-metadata");
        assert_eq!(case_name(Target::Userdata), "userdata");
    }

    #[test]
    fn a_hostile_targets_list_is_refused_with_the_entry_and_the_reason() {
        use crate::runtime::ParameterInfo;
        let good = || info(Target::AzureIot, "azure-iot", &["pem", "aziot"]);
        assert!(Targets::checked(vec![good(), info(Target::Arc, "arc", &["wireguard"])]).is_ok());
        assert!(Targets::checked(Vec::new()).is_ok());

        // Thousands of entries: refused on the count, before anything else is read.
        assert_eq!(
            refused(vec![good(); 5000]),
            "the component's targets() lists 5000 targets; at most 64"
        );
        // Names that are not plain: escape sequences, paths, spaces, empty, too long, upper case.
        for (name, shown) in [
            ("\u{1b}]0;x\u{7}azure-iot", "\\u{1b}]0;x\\u{7}azure-iot"),
            ("../azure-iot", "../azure-iot"),
            ("azure/iot", "azure/iot"),
            ("azure iot", "azure iot"),
            ("", ""),
            ("Azure-Iot", "Azure-Iot"),
            ("azure--iot", "azure--iot"),
        ] {
            assert_eq!(
                refused(vec![info(Target::AzureIot, name, &[])]),
                format!(
                    "the component's targets() entry 0: name `{shown}` is not a plain name (1-64 bytes of `[a-z0-9-]`, words starting with a letter)"
                ),
                "{name:?}"
            );
        }
        let long = "a".repeat(1 << 20);
        let message = refused(vec![info(Target::AzureIot, &long, &[])]);
        assert!(message.ends_with(&format!("{}... (1048576 bytes)` is not a plain name (1-64 bytes of `[a-z0-9-]`, words starting with a letter)", "a".repeat(64))), "{}", &message[..200]);
        assert!(message.len() < 300);
        // A name that is not its case's spelling, one name twice, one case under two names.
        assert_eq!(
            refused(vec![info(Target::AwsIot, "azure-iot", &[])]),
            "the component's targets() entry 0: name `azure-iot` does not match its target case `aws-iot`"
        );
        assert_eq!(
            refused(vec![good(), good()]),
            "the component's targets() entry 1: `azure-iot` is listed twice"
        );
        // Export formats: plain names, each once, a bounded number.
        assert_eq!(
            refused(vec![info(
                Target::AzureIot,
                "azure-iot",
                &["../../etc/passwd"]
            )]),
            "the component's targets() entry 0 (`azure-iot`): export format `../../etc/passwd` is not a plain name"
        );
        assert_eq!(
            refused(vec![info(Target::AzureIot, "azure-iot", &["pem", "pem"])]),
            "the component's targets() entry 0 (`azure-iot`): export format `pem` is listed twice"
        );
        assert_eq!(
            refused(vec![info(Target::AzureIot, "azure-iot", &["pem"; 17])]),
            "the component's targets() entry 0 (`azure-iot`): 17 export formats; at most 16"
        );
        // Texts: bounded and printable.
        let mut t = good();
        t.summary = "x".repeat(1 << 20);
        assert_eq!(
            refused(vec![t]),
            "the component's targets() entry 0 (`azure-iot`): summary is 1048576 bytes long; at most 256"
        );
        let mut t = good();
        t.summary = "ok\u{202e}kO".into();
        assert_eq!(
            refused(vec![t]),
            "the component's targets() entry 0 (`azure-iot`): summary `ok\\u{202e}kO` holds control characters"
        );
        let parameter = |name: &str, example: String| ParameterInfo {
            name: name.into(),
            description: "d".into(),
            example,
        };
        let mut t = good();
        t.required_parameters = vec![parameter("endpoint", "e".repeat(1 << 20))];
        assert_eq!(
            refused(vec![t]),
            "the component's targets() entry 0 (`azure-iot`): parameter `endpoint`: example is 1048576 bytes long; at most 256"
        );
        let mut t = good();
        t.required_parameters = vec![parameter("end point\n", "x".into())];
        assert_eq!(
            refused(vec![t]),
            "the component's targets() entry 0 (`azure-iot`): required parameter `end point\\n` is not a plain name, or is listed twice"
        );
        let mut t = good();
        t.required_parameters = vec![parameter("thingName", "gw-1".into())];
        assert!(Targets::checked(vec![t]).is_ok());
    }
}
