#include "appliance/local_job.h"

#include "restore/drill.h"
#include "snapshot/manifest.h"
#include "storage/check.h"

namespace custos::appliance {

std::unique_ptr<LocalJob> LocalJob::StartVerify(storage::Repository& repo, uint32_t n, uint32_t m) {
  std::unique_ptr<LocalJob> job(new LocalJob());
  LocalJob* j = job.get();
  j->thread_ = std::thread([j, &repo, n, m] {
    storage::CheckOptions o;
    o.read_data = true;
    o.subset_n = n;
    o.subset_m = m;
    o.threads = 1;  // a background job: leave the other cores to backups
    auto r = storage::Check(repo, o);
    LocalOutcome& out = j->outcome_;
    if (!r.ok()) {
      out.state = "failed";
      out.error = "scrub " + std::to_string(n) + "/" + std::to_string(m) + " could not run: " + r.status().ToString();
    } else {
      out.completed = true;
      out.files = r->packs_read;
      out.bytes = r->bytes_read;
      if (r->ok()) {
        out.state = "ok";
      } else {
        out.state = "failed";
        out.error = "scrub " + std::to_string(n) + "/" + std::to_string(m) + ": DAMAGE: " +
                    std::to_string(r->errors.size()) + " problem(s); ";
        for (size_t i = 0; i < r->errors.size() && i < 5; ++i) {
          out.error += (i ? "; " : "") + r->errors[i].object + ": " + r->errors[i].message;
        }
      }
    }
    j->finished_ = true;
  });
  return job;
}

std::unique_ptr<LocalJob> LocalJob::StartDrill(storage::Repository& repo, const std::string& host, uint64_t sample,
                                               const std::string& scratch_parent) {
  std::unique_ptr<LocalJob> job(new LocalJob());
  LocalJob* j = job.get();
  j->thread_ = std::thread([j, &repo, host, sample, scratch_parent] {
    LocalOutcome& out = j->outcome_;
    out.state = "failed";
    auto snap = snapshot::FindSnapshot(repo, "latest", snapshot::SnapshotFilter{host, {}, {}});
    if (!snap.ok()) {
      out.error = "drill of " + host + ": " + snap.status().ToString();
      j->finished_ = true;
      return;
    }
    restore::DrillOptions o;
    o.sample = sample;
    o.scratch_parent = scratch_parent;
    auto res = restore::RunDrill(repo, *snap, o);
    if (!res.ok()) {
      out.error = "drill of " + host + " could not run: " + res.status().ToString();
    } else {
      out.files = res->restore.files_restored;
      out.bytes = res->restore.bytes_written;
      if (res->report_id) out.report = res->report_id->Hex();
      if (res->ok() && res->report_id) {
        out.state = "ok";
      } else if (!res->report_id) {
        out.error = "drill of " + host + ": its report could not be saved: " + res->report_status.ToString();
      } else {
        out.error = "drill of " + host + " FAILED: " + std::to_string(res->restore.failures.size()) +
                    " file(s) did not restore or verify" +
                    (res->restore.failures.empty() ? "" : "; first: " + res->restore.failures[0].Describe());
      }
    }
    j->finished_ = true;
  });
  return job;
}

LocalJob::~LocalJob() {
  if (thread_.joinable()) thread_.join();
}

}  // namespace custos::appliance
