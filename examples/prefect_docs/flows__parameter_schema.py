# From Prefect 3's documentation, concepts/flows ("View the parameter schema for a
# flow"), with only the import changed (`prefect` -> `sdk`). The docs show the
# schema's JSON; here its parts are printed for the runner.
import inspect

from sdk import flow


@flow
def schleeb(x: int, y: str, z: bool | None = None):
    print(f"x: {x}, y: {y}, z: {z}")


print(inspect.signature(schleeb))
schema = schleeb.parameters
print(schema.title, schema.type, sorted(schema.properties), schema.required)
print(schleeb.parameters.model_json_schema()["title"])
# expect: (x: int, y: str, z: bool | None = None)
# expect: Parameters object ['x', 'y', 'z'] ['x', 'y']
# expect: ParameterSchema
