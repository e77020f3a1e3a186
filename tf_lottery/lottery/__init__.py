"""Lottery tickets: rewind points, `reset_for_retrain`, `Ticket`, `LotteryCallback`, summaries, stability."""
