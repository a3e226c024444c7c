// The operator's case commands that need no agent (doc/cli.md, `custos
// case`): open, list, show, close, note, hold, release, export,
// checkpoint. JSON request in, JSON reply out, as custosd's other control
// commands; `custos case collect` and `custos case snapshot` start agent
// jobs and live in the server.
//
// Every action on a case is itself a ledger record (issue 7): holds and
// releases are `hold` records (the repository's hold files carry the same
// facts, and `forget`/prune honour them), exports are written by the
// store. The operator is named by the account the CLI runs as (the control
// socket is reachable only through the data directory's 0700 mode).
//
// Thread-safety: custosd's loop only.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "evidence/case_store.h"
#include "storage/repository.h"

namespace custos::appliance {

// Whether `cmd` is one of the commands below ("case-open", ...).
bool IsCaseCommand(const std::string& cmd);

// The operator named in a control request ("user"; "operator" if none).
evidence::Actor OperatorActor(const nlohmann::json& req);

// Places a hold on `snapshot_prefix` for `case_id` and records it in the
// ledger: the hold record's body names the snapshot, the repository hold
// ID and the reason. Used by `case-hold` and by `case snapshot`'s backup
// when it commits.
Result<nlohmann::json> HoldForCase(evidence::CaseStore& cases, storage::Repository& repo, const std::string& case_id,
                                   const std::string& snapshot_prefix, const std::string& reason,
                                   const evidence::Actor& by);

nlohmann::json HandleCaseRequest(evidence::CaseStore& cases, storage::Repository& repo, const nlohmann::json& req);

}  // namespace custos::appliance
