# The Cargo workspace as a store path, and the crate versions in it.
#
# Only what cargo reads goes into the source: the workspace manifest and lock,
# and each member crate listed in Cargo.toml (cargo refuses to load a
# workspace with a member missing, so the package build of one crate needs
# all of them). Docs, Nix files, the unit files and the tests' Python stay
# out, so editing them does not rebuild the Rust code.
{ lib }:

let
  fs = lib.fileset;

  workspace = lib.importTOML ../Cargo.toml;

  memberDirs = map (member: ../. + "/${member}") workspace.workspace.members;
in
{
  src = fs.toSource {
    root = ../.;
    fileset = fs.unions (
      [
        ../Cargo.toml
        ../Cargo.lock
        (fs.maybeMissing ../.cargo/config.toml)
        (fs.maybeMissing ../rustfmt.toml)
        (fs.maybeMissing ../clippy.toml)
      ]
      ++ memberDirs
    );
  };

  # `version = "1.0.0"` or `version.workspace = true` in a member's manifest.
  versionOf =
    member:
    let
      version = (lib.importTOML (../. + "/${member}/Cargo.toml")).package.version;
    in
    if builtins.isString version then version else workspace.workspace.package.version;
}
