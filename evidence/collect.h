// Collection: runs a recipe (evidence/recipe.h) on the server it runs on
// and streams what it finds to a sink. The agent's sink sends it to the
// appliance (agent/remote_collect.h); tests use an in-memory one.
//
// Rules (issue 7, ARCHITECTURE.md "Evidence"):
//   - nothing is staged on the target's disks: content goes from the file
//     (or the program's pipe) straight to the sink, in chunks;
//   - files are opened with O_NOATIME and O_NOFOLLOW, and their statx
//     metadata is taken before and after the read; a difference in size,
//     mtime, ctime or inode is flagged (`changed`);
//   - the SHA-256 of each item is computed while reading;
//   - everything that could not be collected becomes a gap with its
//     reason (the sink's Gap), never a silent omission;
//   - what collection itself changes on the target (programs run, the
//     agent's own process and connection) is reported as footprints.
//
// Thread-safety: Collect runs on one thread; the sink is called from it
// only.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/bytes.h"
#include "base/status.h"
#include "evidence/recipe.h"

namespace custos::evidence {

// What an item is, sent before its content.
struct ItemStart {
  std::string artifact;          // the recipe step's artifact name
  std::string kind;              // "file", "cmd", "processes", "timeline"
  std::string path;              // file items: the path (bytes, maybe not UTF-8)
  std::vector<std::string> argv;  // cmd items
  nlohmann::json before;         // file items: statx metadata before the read
};

// What is known once the content has been read.
struct ItemEnd {
  uint64_t size = 0;
  std::string sha256;     // hex, of the bytes sent
  nlohmann::json after;   // file items: statx metadata after the read
  bool changed = false;   // file items: metadata differs between before and after
  int exit_code = 0;      // cmd items: exit status (-signal when killed)
  std::string stderr_text;  // cmd items: the first 4 KiB of standard error
};

// Where collected things go. A non-OK status from any call stops the
// collection (the session broke for good, the job was cancelled).
class CollectSink {
 public:
  virtual ~CollectSink() = default;
  virtual Status BeginItem(const ItemStart& start) = 0;
  virtual Status Data(ByteView chunk) = 0;  // at most kChunkBytes
  virtual Status EndItem(const ItemEnd& end) = 0;
  // The item begun last is abandoned (a read error midway): what was sent
  // of it is discarded by the receiver, and a Gap follows.
  virtual Status AbortItem(const std::string& reason) = 0;
  virtual Status Gap(const std::string& artifact, const std::string& path, const std::string& reason) = 0;
  virtual Status Footprint(const std::string& what) = 0;
  // Waits until the receiver has acknowledged everything sent, and
  // returns the file items whose hash it found wrong on receipt: Collect
  // reads each of them once more (the receiver keeps the mismatch as a
  // gap). Called at the end of the task.
  struct Retry {
    std::string artifact, path;
  };
  virtual Result<std::vector<Retry>> Drain() { return std::vector<Retry>{}; }
};

constexpr size_t kChunkBytes = 1u << 20;

struct CollectOptions {
  // Subtrees no timeline or tree step descends into (absolute paths);
  // pseudo file systems (proc, sysfs, cgroup, debugfs...) are always left
  // out of timelines and trees.
  std::vector<std::string> excludes;
  // Files larger than this are a gap ("larger than the limit"), 0 = none.
  uint64_t max_file_bytes = 0;
  // Programs run by `cmd` steps are killed after this (a gap).
  int cmd_timeout_s = 300;
  // Set from another thread to stop between chunks (CancelledError).
  const std::atomic<bool>* cancel = nullptr;
  // Progress: items done and bytes read so far.
  std::function<void(uint64_t items, uint64_t bytes)> progress;
};

struct CollectCounts {
  uint64_t planned = 0;    // items the task set out to collect
  uint64_t collected = 0;  // items delivered whole
  uint64_t failed = 0;     // gaps for items that exist but could not be read
  uint64_t absent = 0;     // gaps for named paths (or patterns) that do not exist
  uint64_t retried = 0;    // items read again after a hash mismatch on receipt
  uint64_t bytes = 0;
};

// Runs every step of `recipe`; OK with the counts when the task ran to its
// end (whatever gaps it has), an error only when the sink failed or the
// task was cancelled.
Result<CollectCounts> Collect(const Recipe& recipe, const CollectOptions& options, CollectSink& sink);

// statx metadata of a path (not following a final symlink) as the JSON an
// item's `before`/`after` hold; used by tests to compare.
Result<nlohmann::json> StatJson(const std::string& path);

}  // namespace custos::evidence
