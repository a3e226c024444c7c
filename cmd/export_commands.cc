#include "cmd/common.h"
namespace custos::cli {
void AddExportCommands(CLI::App&, Globals&, int&) {}
}  // namespace custos::cli
