# Prefect docs: docs/v3/examples/hello-world.mdx (the tags(...) block around flow calls).
# Unchanged but for the imports, plus (added) a flow whose run is read back to show its tags.
from sdk import flow, get_client, runtime, tags


@flow(log_prints=True)
def hello(name: str = "Marvin") -> None:
    """Log a friendly greeting."""
    print(f"Hello, {name}!")


@flow
def which_run() -> str:
    return runtime.flow_run.id


if __name__ == "__main__":
    # run the flow with default parameters
    with tags(
        "test"
    ):  # This is a tag that we can use to filter the flow runs in the UI
        hello()  # Logs: "Hello, Marvin!"

        # run the flow with a different input
        hello("Marvin")  # Logs: "Hello, Marvin!"

        # run the flow multiple times for different people
        crew = ["Zaphod", "Trillian", "Ford"]

        for name in crew:
            hello(name)

        run_id = which_run()

    with get_client(sync_client=True) as client:
        print("tags:", client.read_flow_run(run_id).tags)

# expect-stderr: Hello, Zaphod!
# expect: tags: ['test']
