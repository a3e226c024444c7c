// custos dump/export: in progress
