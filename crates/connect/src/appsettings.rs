//! Connection strings as the application keeps them: the `ConnectionStrings` section of
//! `appsettings.json`, with `appsettings.{Environment}.json` over it, as ASP.NET Core's
//! configuration reads them (comments allowed, later files winning).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::Error;

/// The connection string ASP.NET's templates use.
pub const DEFAULT_NAME: &str = "DefaultConnection";

/// Reads connection string `name` from `file` and, when `environment` is given, from
/// `appsettings.{environment}.json` beside it (which wins, when it has it).
pub fn connection_string(
    file: &Path,
    name: &str,
    environment: Option<&str>,
) -> Result<String, Error> {
    let mut files = vec![file.to_path_buf()];
    if let Some(env) = environment {
        files.push(overlay(file, env));
    }
    let mut found = None;
    let mut names = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let overlay = i > 0;
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            // An environment file is optional, as in ASP.NET.
            Err(e) if overlay && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::Settings(format!("`{}`: {e}", path.display()))),
        };
        let value: Value = serde_json::from_reader(json_comments::StripComments::new(
            text.as_bytes(),
        ))
        .map_err(|e| {
            Error::Settings(format!(
                "`{}`: not valid JSON at line {}: {e}",
                path.display(),
                e.line()
            ))
        })?;
        let Some(section) = value
            .as_object()
            .and_then(|o| {
                o.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("ConnectionStrings"))
            })
            .map(|(_, v)| v)
        else {
            continue;
        };
        let Some(section) = section.as_object() else {
            return Err(Error::Settings(format!(
                "`{}`: ConnectionStrings is not an object",
                path.display()
            )));
        };
        for (k, v) in section {
            names.push(k.clone());
            // Configuration keys ignore case.
            if k.eq_ignore_ascii_case(name) {
                match v.as_str() {
                    Some(s) => found = Some(s.to_string()),
                    None => {
                        return Err(Error::Settings(format!(
                            "`{}`: ConnectionStrings:{k} is not a string",
                            path.display()
                        )))
                    }
                }
            }
        }
    }
    found.ok_or_else(|| {
        names.sort();
        names.dedup();
        let searched: Vec<String> = files.iter().map(|f| format!("`{}`", f.display())).collect();
        Error::Settings(if names.is_empty() {
            format!("no ConnectionStrings section in {}", searched.join(" or "))
        } else {
            format!(
                "no connection string `{name}` in {}; it has {} (choose one with --connection-name)",
                searched.join(" or "),
                names.join(", ")
            )
        })
    })
}

fn overlay(file: &Path, environment: &str) -> PathBuf {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "appsettings".into());
    file.with_file_name(format!("{stem}.{environment}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_the_default_connection_with_comments_and_an_overlay() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "appsettings.json",
            r#"{
  // The template's comment
  "ConnectionStrings": {
    "DefaultConnection": "Host=localhost;Database=app;Username=app;Password=dev" /* dev */
  },
  "Logging": { "LogLevel": { "Default": "Information" } }
}"#,
        );
        write(
            dir.path(),
            "appsettings.Production.json",
            r#"{ "ConnectionStrings": { "defaultconnection": "Host=db.prod;Database=app;Username=app" } }"#,
        );
        assert_eq!(
            connection_string(&file, DEFAULT_NAME, None).unwrap(),
            "Host=localhost;Database=app;Username=app;Password=dev"
        );
        assert_eq!(
            connection_string(&file, DEFAULT_NAME, Some("Production")).unwrap(),
            "Host=db.prod;Database=app;Username=app"
        );
        // A missing environment file is no error.
        assert_eq!(
            connection_string(&file, DEFAULT_NAME, Some("Staging")).unwrap(),
            "Host=localhost;Database=app;Username=app;Password=dev"
        );
    }

    #[test]
    fn a_missing_name_lists_the_names_there_are() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "appsettings.json",
            r#"{"ConnectionStrings":{"Identity":"Data Source=id.db","Cache":"x"}}"#,
        );
        let err = connection_string(&file, DEFAULT_NAME, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no connection string `DefaultConnection`")
                && err.contains("Cache, Identity"),
            "{err}"
        );
        assert_eq!(
            connection_string(&file, "identity", None).unwrap(),
            "Data Source=id.db"
        );
    }
}
