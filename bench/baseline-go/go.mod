module hitless.invalid/bench/baseline-go

go 1.19
