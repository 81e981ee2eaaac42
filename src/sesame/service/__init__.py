"""What the daemon carries out besides the engine's decisions, one job a module:
the loop (:mod:`.loop`), the table kept whole (:mod:`.keeper`), the replay record
(:mod:`.record`), knockd's one-time sequence files (:mod:`.onetime`) and what is
logged (:mod:`.report`). None of them decides who may knock: the engine does."""
