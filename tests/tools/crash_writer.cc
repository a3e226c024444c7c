// Placeholder: replaced by the crash-safety workload.
int main() { return 0; }
