//! The roles of a bundle, and the role id each one gets.
//!
//! ASP.NET role names are free text (`Help Desk`, `Account Manager`), while a User
//! Management role id allows only `[A-Za-z0-9-_/\]`. Every role gets an id, by these rules
//! in this order:
//!
//! 1. The mapping file's `roles` object names the role: `{"roles": {"Help Desk": "helpdesk"}}`.
//! 2. The name is a valid role id: the name is the id (`Admin`).
//! 3. Otherwise the id is derived from the name: every run of characters a role id does not
//!    allow becomes one `-`, and `-` at either end is dropped (`Help Desk` → `Help-Desk`,
//!    `R&D (EU)` → `R-D-EU`); a name with nothing left (or no name) becomes `role-` and the
//!    role's source id derived the same way. An id longer than 200 characters is cut.
//!
//! Ids of the first two rules are taken first; a derived id that is already taken gets
//! `-2`, `-3`, … in `roles.ndjson` order, so the same bundle always gets the same ids. The
//! name stays the role's display name. No user fails because of a role's name.

use std::collections::{BTreeMap, HashMap, HashSet};

use ferry_bundle::RoleRecord;
use ferry_store_core::{RoleId, RoleImport};

/// A role whose id was derived from its name, to tell the operator once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DerivedRole {
    /// The role's name in the bundle.
    pub name: String,
    /// The id it got.
    pub id: RoleId,
}

/// The roles of a bundle: ASP.NET role id → User Management role id. Built once, before
/// the users are mapped.
#[derive(Clone, Debug, Default)]
pub struct RoleIndex {
    by_source_id: HashMap<String, RoleId>,
}

/// What [`RoleIndex::build`] made of a bundle's roles.
#[derive(Debug, Default)]
pub struct Roles {
    /// Source role id → role id, for mapping memberships.
    pub index: RoleIndex,
    /// The roles to create, in bundle order.
    pub create: Vec<RoleImport>,
    /// The roles whose id was derived from their name.
    pub derived: Vec<DerivedRole>,
}

/// The longest role id User Management accepts.
const MAX_LEN: usize = 200;

/// `name` with every run of characters a role id does not allow made one `-`.
fn derive(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '\\') {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    trimmed.chars().take(MAX_LEN).collect()
}

impl RoleIndex {
    /// Gives every role an id (see the module documentation). `overrides` maps role names
    /// to chosen ids; an override that is not a valid role id, or that two roles would
    /// share, is an error naming it.
    pub fn build(
        roles: &[RoleRecord],
        overrides: &BTreeMap<String, String>,
    ) -> Result<Roles, String> {
        let mut taken: HashSet<String> = HashSet::new();
        let mut ids: Vec<Option<RoleId>> = vec![None; roles.len()];
        // Rules 1 and 2 first: chosen ids and names that are ids already.
        for (i, role) in roles.iter().enumerate() {
            let name = role.name.as_deref().unwrap_or("");
            let chosen = match overrides.get(name) {
                Some(id) => Some(RoleId::new(id).map_err(|e| {
                    format!("mapping `roles`: the id chosen for role '{name}' is not valid: {e}")
                })?),
                None => RoleId::new(name).ok(),
            };
            if let Some(id) = chosen {
                if !taken.insert(id.as_str().to_string()) {
                    return Err(format!(
                        "role '{name}' would get role id `{id}`, which another role of the bundle has; choose another under `roles` in a mapping file"
                    ));
                }
                ids[i] = Some(id);
            }
        }
        let mut derived = Vec::new();
        for (i, role) in roles.iter().enumerate() {
            if ids[i].is_some() {
                continue;
            }
            let name = role.name.as_deref().unwrap_or("");
            let mut base = derive(name);
            if base.is_empty() {
                base = format!("role-{}", derive(&role.id));
            }
            let mut candidate = base.clone();
            let mut n = 2;
            while taken.contains(&candidate) {
                let suffix = format!("-{n}");
                let keep = MAX_LEN.saturating_sub(suffix.len());
                candidate = format!("{}{suffix}", base.chars().take(keep).collect::<String>());
                n += 1;
            }
            let id = RoleId::new(&candidate).map_err(|e| format!("role '{name}': {e}"))?;
            taken.insert(candidate);
            derived.push(DerivedRole {
                name: name.to_string(),
                id: id.clone(),
            });
            ids[i] = Some(id);
        }
        let mut out = Roles::default();
        for (role, id) in roles.iter().zip(ids) {
            let id = id.expect("every role has an id");
            out.index.by_source_id.insert(role.id.clone(), id.clone());
            out.create.push(RoleImport {
                id,
                name: role.name.clone().unwrap_or_default(),
                claims: serde_json::to_value(&role.claims).expect("claims serialise"),
            });
        }
        out.derived = derived;
        Ok(out)
    }

    /// The role id of the role with ASP.NET id `source_id`.
    pub fn resolve(&self, source_id: &str) -> Result<RoleId, String> {
        self.by_source_id
            .get(source_id)
            .cloned()
            .ok_or_else(|| format!("role id `{source_id}` is not in roles.ndjson"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(id: &str, name: Option<&str>) -> RoleRecord {
        RoleRecord {
            id: id.into(),
            name: name.map(Into::into),
            normalized_name: None,
            concurrency_stamp: None,
            claims: Vec::new(),
        }
    }

    fn ids(roles: &Roles) -> Vec<&str> {
        roles.create.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn names_with_spaces_get_stable_derived_ids() {
        // Regression: every member of a role named with a space failed at load.
        let bundle = [
            role("1", Some("Help Desk")),
            role("2", Some("Admin")),
            role("3", Some("Help-Desk")),
            role("4", Some("  Help   Desk!")),
            role("5", Some("R&D (EU)")),
            role("6", Some("管理者")),
            role("7", None),
        ];
        let roles = RoleIndex::build(&bundle, &BTreeMap::new()).unwrap();
        // `Help-Desk` is a valid id, so it keeps it; the derived ones queue behind it.
        assert_eq!(
            ids(&roles),
            [
                "Help-Desk-2",
                "Admin",
                "Help-Desk",
                "Help-Desk-3",
                "R-D-EU",
                "role-6",
                "role-7"
            ]
        );
        assert_eq!(roles.derived.len(), 5);
        assert_eq!(
            roles.create[0].name, "Help Desk",
            "the name stays the display name"
        );
        assert_eq!(roles.index.resolve("1").unwrap().as_str(), "Help-Desk-2");
        // The same bundle, the same ids.
        let again = RoleIndex::build(&bundle, &BTreeMap::new()).unwrap();
        assert_eq!(ids(&again), ids(&roles));
    }

    #[test]
    fn a_mapping_chooses_ids_and_bad_choices_are_errors() {
        let bundle = [role("1", Some("Help Desk")), role("2", Some("Admin"))];
        let chosen: BTreeMap<String, String> =
            [("Help Desk".to_string(), "support".to_string())].into();
        let roles = RoleIndex::build(&bundle, &chosen).unwrap();
        assert_eq!(ids(&roles), ["support", "Admin"]);
        assert!(roles.derived.is_empty());
        let bad: BTreeMap<String, String> =
            [("Help Desk".to_string(), "help desk".to_string())].into();
        let e = RoleIndex::build(&bundle, &bad).unwrap_err();
        assert!(
            e.contains("the id chosen for role 'Help Desk' is not valid"),
            "{e}"
        );
        let clash: BTreeMap<String, String> =
            [("Help Desk".to_string(), "Admin".to_string())].into();
        let e = RoleIndex::build(&bundle, &clash).unwrap_err();
        assert!(e.contains("which another role of the bundle has"), "{e}");
        assert!(roles.index.resolve("9").is_err());
    }
}
