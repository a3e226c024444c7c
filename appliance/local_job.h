// Jobs custosd runs itself, on its own repository, on a thread of their
// own (the daemon's loop never waits on them):
//
//   verify  the rolling scrub: reads one part of the packs (check
//           --read-data-subset N/M: every byte hashed and decrypted); the
//           appliance moves N on after each run, so M runs read every pack
//           once ("a thirtieth per night" with M = 30). Damage fails the job
//           and is named in its error.
//   drill   a restore drill (restore/drill.h) of an agent's latest
//           snapshot: restores a sample of its files into scratch space,
//           verifies them, and keeps the signed drill report in the
//           repository (custos reports list).
//
// Thread-safety: Start* and Poll from the daemon's thread; the work runs on
// the job's own thread (Repository and Check are safe beside the writer).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "storage/repository.h"

namespace custos::appliance {

struct LocalOutcome {
  std::string state;  // "ok", "failed"
  std::string error;
  std::string report;  // drill: the report's ID
  uint64_t files = 0, bytes = 0;  // verify: packs and bytes read
  bool completed = false;  // verify: the part was read (damage or not), so the scrub moves on
};

class LocalJob {
 public:
  // Part `n` of `m` (1-based) of the packs.
  static std::unique_ptr<LocalJob> StartVerify(storage::Repository& repo, uint32_t n, uint32_t m);
  // A drill of `host`'s newest snapshot: `sample` files (0: all) under
  // `scratch_parent`.
  static std::unique_ptr<LocalJob> StartDrill(storage::Repository& repo, const std::string& host, uint64_t sample,
                                              const std::string& scratch_parent);
  ~LocalJob();  // waits for the work

  bool finished() const { return finished_.load(); }
  // Valid once finished().
  const LocalOutcome& outcome() const { return outcome_; }

 private:
  LocalJob() = default;
  std::thread thread_;
  std::atomic<bool> finished_{false};
  LocalOutcome outcome_;
};

}  // namespace custos::appliance
