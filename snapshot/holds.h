// Holds: a snapshot under an active hold is never forgotten (legal hold,
// incident cases). A hold names one snapshot, a reason, who placed it and
// when, and optionally a case ID (the evidence layer's).
//
// Records (doc/formats/repository.md, "Hold files"): holds are write-once
// files in the repository, never deleted. Placing a hold writes a `hold`
// record; releasing it writes a `release` record naming the hold. A hold is
// active while no release names it. So the history of every hold (who
// placed and who released it, and why) stays in the repository, sealed like
// everything else.
//
// Fail closed: a hold file that cannot be read might be a hold on anything,
// so HeldSnapshots (and therefore ForgetSnapshots) refuses to answer while
// one is damaged.
//
// Writing needs the repository's writer lock (storage::Repository::SaveHold).
// Thread-safety: as the repository's.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "storage/repository.h"

namespace custos::snapshot {

struct Hold {
  Id id;  // the hold record's file ID: what `custos hold release` names
  Id snapshot;
  std::string reason, case_id;
  std::string user, host, time;  // who placed it; time RFC 3339 UTC
  bool released = false;
  Id release_id;  // when released: the release record and its who/when/why
  std::string released_by, released_at, release_reason;
};

// Places a hold on `snapshot` (writer lock). NotFound if there is no such
// snapshot; InvalidArgument for an empty reason.
Result<Hold> AddHold(storage::Repository& repo, const Id& snapshot, const std::string& reason,
                     const std::string& case_id, const storage::Actor& who);

// Every hold, active or released, oldest first. Records that cannot be read
// or parsed are left out and returned in `damaged` (when given).
Result<std::vector<Hold>> ListHolds(storage::Repository& repo, std::vector<Status>* damaged = nullptr);

// Releases the active hold whose ID starts with `id_prefix` (writer lock).
// NotFound if none; InvalidArgument if the prefix is ambiguous, not hex, or
// the hold is already released.
Result<Hold> ReleaseHold(storage::Repository& repo, const std::string& id_prefix, const std::string& reason,
                         const storage::Actor& who);

// The snapshots under an active hold. Corruption naming the file if any
// hold file is damaged (fail closed: see above).
Result<std::set<Id>> HeldSnapshots(storage::Repository& repo);

// Removes the snapshot files `ids` (writer lock), after reading the holds
// again: PermissionDenied, and nothing removed, if any of them is held.
// Returns the IDs removed; an error after some removals says how many went.
Result<std::vector<Id>> ForgetSnapshots(storage::Repository& repo, const std::vector<Id>& ids);

}  // namespace custos::snapshot
