"""Storage providers: where durox keeps history, queues, status and KV."""
