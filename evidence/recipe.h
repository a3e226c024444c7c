// Artifact recipes: what a collection task gathers from a server, in order.
//
// A recipe is a small versioned text (doc/formats/evidence.md, "Recipes"),
// so the exact text can be hashed into the case's `plan` record before
// anything is collected and shown to a court later:
//
//   recipe linux-triage 1
//   # comments and blank lines are ignored
//   cmd       network.sockets     ss -tunapeO
//   processes processes
//   file      kernel.modules      /proc/modules
//   timeline  timeline            /
//   tree      logs                /var/log
//
// One step per line: a kind, an artifact name ([a-z0-9._-]+) and the kind's
// arguments, separated by blanks (no quoting: arguments cannot contain
// blanks, which keeps the grammar trivial to audit). Kinds:
//   cmd ARGV...      run a program (no shell) and keep its standard output
//   processes        every process: command line, user, start time, the
//                    SHA-256 of its running executable (deleted ones too)
//   file PATH...     files (glob patterns allowed), content and metadata
//   tree PATH...     every regular file below each directory
//   timeline PATH... statx metadata of every node below each path, as a
//                    Sleuth Kit bodyfile; no content is read
//
// Steps run in the text's order: the built-in profiles put them in RFC 3227
// order of volatility (network, processes, logins, kernel, temporary file
// systems, the timeline before any content is read, logs, persistence,
// package integrity).
//
// Thread-safety: plain values.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"

namespace custos::evidence {

enum class StepKind { kCmd, kProcesses, kFile, kTree, kTimeline };
std::string_view StepKindName(StepKind k);

struct Step {
  StepKind kind;
  std::string artifact;
  std::vector<std::string> args;  // argv (cmd) or paths
};

struct Recipe {
  std::string name;
  int version = 0;
  std::string text;    // exactly as parsed: what the plan record hashes
  std::string sha256;  // hex SHA-256 of `text`
  std::vector<Step> steps;
};

// Parses a recipe; InvalidArgument names the line. At most 64 KiB and 256
// steps; paths must be absolute.
Result<Recipe> ParseRecipe(std::string_view text);

// A built-in profile by name ("linux-triage"); NotFound lists the known ones.
Result<Recipe> BuiltinProfile(std::string_view name);
std::vector<std::string> BuiltinProfileNames();

// A recipe that collects `paths` (files and trees): `custos case collect
// --path`.
Result<Recipe> PathsRecipe(const std::vector<std::string>& paths);

}  // namespace custos::evidence
