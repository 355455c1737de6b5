"""The command lines: absl flags (the official names), quiet logs, and one module per command
(train, eval, vis, export, summary, the dataset builders), each flags -> config -> one library
call. Library code outside this package never reads flags."""
