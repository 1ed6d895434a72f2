"""What every door (gRPC, HTTP, Triton's v2) shares and none owns: errors as codes and
statuses, the v1 conversions, the calls' shares, the metrics. It imports no door."""
