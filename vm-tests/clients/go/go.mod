module hitless.invalid/vm-tests/clients/go

go 1.19
