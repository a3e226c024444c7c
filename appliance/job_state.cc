#include "appliance/job_state.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/crypto.h"
#include "base/file_util.h"

namespace custos::appliance {

namespace {
constexpr char kMagic[8] = {'C', 'U', 'S', 'T', 'O', 'S', 'J', '1'};
constexpr size_t kFixed = 8 + 5 * 8;
}  // namespace

Bytes EncodeJobState(const JobState& s) {
  std::vector<Id> ids(s.received.begin(), s.received.end());
  std::sort(ids.begin(), ids.end());
  Bytes out(kMagic, kMagic + 8);
  for (uint64_t v : {s.data_blobs, s.tree_blobs, s.bytes_stored, s.rejected, uint64_t(ids.size())}) PutU64(out, v);
  for (const Id& id : ids) Append(out, ByteView(id.bytes.data(), id.bytes.size()));
  Id sum = Sha256(out);
  Append(out, ByteView(sum.bytes.data(), sum.bytes.size()));
  return out;
}

Result<JobState> DecodeJobState(ByteView b) {
  if (b.size() < kFixed + 32 || std::memcmp(b.data(), kMagic, 8) != 0) {
    return CorruptionError("job state: not a job state file");
  }
  size_t body = b.size() - 32;
  Id sum = Sha256(ByteView(b.data(), body));
  if (std::memcmp(sum.bytes.data(), b.data() + body, 32) != 0) return CorruptionError("job state: checksum mismatch");
  JobState s;
  uint64_t v[5];
  for (int i = 0; i < 5; ++i) v[i] = GetU64(b.data() + 8 + 8 * i);
  if ((body - kFixed) % 32 != 0 || v[4] != (body - kFixed) / 32) return CorruptionError("job state: bad ID count");
  s.data_blobs = v[0];
  s.tree_blobs = v[1];
  s.bytes_stored = v[2];
  s.rejected = v[3];
  s.received.reserve(v[4]);
  Id prev;
  for (uint64_t i = 0; i < v[4]; ++i) {
    Id id;
    std::memcpy(id.bytes.data(), b.data() + kFixed + 32 * i, 32);
    if (i > 0 && !(prev < id)) return CorruptionError("job state: IDs not in ascending order");
    s.received.insert(id);
    prev = id;
  }
  return s;
}

Status SaveJobState(const std::string& path, const JobState& s) {
  RETURN_IF_ERROR(MakeDirs(path.substr(0, path.rfind('/')), 0700));
  return WriteFileAtomic(path, EncodeJobState(s), 0600, Overwrite::kYes);
}

Result<JobState> LoadJobState(const std::string& path) {
  auto data = ReadFile(path);
  if (!data.ok()) return data.status();
  return DecodeJobState(*data);
}

}  // namespace custos::appliance
