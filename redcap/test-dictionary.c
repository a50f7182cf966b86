/*
 * Tests for the data dictionary model: a realistic dictionary CSV (BOM,
 * CRLF, quoted commas, quotes and line breaks) and the same dictionary as
 * content=metadata JSON give the same model; delimiters, header forms,
 * every refusal with its line:column; events, mapping, repeating; lookups
 * and export columns.
 *
 * Inputs are parsed from heap buffers of exactly their length so ASan and
 * valgrind catch any read past the end.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "redcap/dictionary.h"
#include "tests/harness.h"

/* An exact-size heap copy of s (no NUL after it). */
static char *dup_exact(const char *s, size_t n)
{
	char *b = malloc(n ? n : 1);
	if (!b)
		abort();
	memcpy(b, s, n);
	return b;
}

static char *read_testdata(const char *name, size_t *len)
{
	char rel[256];
	snprintf(rel, sizeof(rel), "redcap/testdata/%s", name);
	return harness_read_source_file(rel, len);
}

static int parse_csv(redcap_dict *d, const char *text, redcap_error *err)
{
	size_t n = strlen(text);
	char *b = dup_exact(text, n);
	int rc = redcap_dict_parse_csv(d, b, n, err);
	free(b);
	return rc;
}

static int parse_json(redcap_dict *d, const char *text, redcap_error *err)
{
	size_t n = strlen(text);
	char *b = dup_exact(text, n);
	int rc = redcap_dict_parse_json(d, b, n, err);
	free(b);
	return rc;
}

static const char *const field_order[] = {
	"record_id", "first_name", "dob", "sex", "race", "email", "phone", "comments", "desc_intro", "consent",
	"demographics_complete", "vitals_date", "heart_rate", "temp_c", "weight_kg", "bmi", "pain", "smoker",
	"alert_ok", "vitals_complete", "lab_time", "glucose", "lab_pdf", "lab_code", "lab_flag", "mrn",
	"labs_complete",
};

/* The model of testdata/dictionary.csv == testdata/metadata.json. */
static void check_model(const redcap_dict *d, bool csv)
{
	REQUIRE(d->n_fields == sizeof(field_order) / sizeof(field_order[0]));
	for (size_t i = 0; i < d->n_fields; i++)
		CHECK_STR(d->fields[i].name, field_order[i]);
	REQUIRE(d->n_forms == 3);
	CHECK_STR(d->forms[0].name, "demographics");
	CHECK_STR(d->forms[1].name, "vitals");
	CHECK_STR(d->forms[2].name, "labs");
	CHECK(d->forms[0].first == 0 && d->forms[0].n_fields == 11 && d->forms[0].complete == 10);
	CHECK(d->forms[1].first == 11 && d->forms[1].n_fields == 9 && d->forms[1].complete == 19);
	CHECK(d->forms[2].first == 20 && d->forms[2].n_fields == 7 && d->forms[2].complete == 26);
	CHECK_STR(redcap_dict_record_id(d)->name, "record_id");
	CHECK_INT(d->longitudinal, -1);
	CHECK_INT(d->repeating, -1);

	const redcap_field *f = redcap_dict_field(d, "first_name");
	REQUIRE(f);
	CHECK(f->identifier && !f->required && f->type == REDCAP_FIELD_TEXT && f->vtype == REDCAP_V_NONE);
	CHECK_STR(f->raw[REDCAP_COL_SECTION_HEADER], "Contact Information");
	CHECK_INT(f->line, csv ? 3 : 0);

	f = redcap_dict_field(d, "dob");
	REQUIRE(f);
	CHECK_INT(f->vtype, REDCAP_V_DATE_MDY);
	CHECK_STR(f->min, "1900-01-01");
	CHECK_STR(f->max, "");
	CHECK_STR(f->raw[REDCAP_COL_FIELD_NOTE], "MM-DD-YYYY");

	f = redcap_dict_field(d, "sex");
	REQUIRE(f && f->n_choices == 3);
	CHECK(f->type == REDCAP_FIELD_RADIO && f->required);
	CHECK_STR(f->choices[2].code, "2");
	CHECK_STR(f->choices[2].label, "Other, please specify");
	CHECK(f->choices[0].column == NULL);
	CHECK_STR(f->raw[REDCAP_COL_CUSTOM_ALIGNMENT], "RH");

	f = redcap_dict_field(d, "race");
	REQUIRE(f && f->n_choices == 5);
	CHECK_INT(f->type, REDCAP_FIELD_CHECKBOX);
	CHECK_STR(f->choices[3].code, "-99");
	CHECK_STR(f->choices[3].column, "race____99");
	CHECK_STR(f->choices[4].code, "A.b");
	CHECK_STR(f->choices[4].label, "Other (write \"in\")");
	CHECK_STR(f->choices[4].column, "race___a_b");

	f = redcap_dict_field(d, "comments");
	REQUIRE(f);
	CHECK_STR(f->raw[REDCAP_COL_FIELD_LABEL], "Comments\n(free text, \"quoted\")");
	CHECK_STR(f->raw[REDCAP_COL_BRANCHING_LOGIC], "[sex] = '2'");
	CHECK_INT(f->line, csv ? 9 : 0);
	/* The field after the two-line label starts on line 11. */
	CHECK_INT(redcap_dict_field(d, "desc_intro")->line, csv ? 11 : 0);
	CHECK_INT(redcap_dict_field(d, "desc_intro")->type, REDCAP_FIELD_DESCRIPTIVE);

	f = redcap_dict_field(d, "consent");
	REQUIRE(f && f->n_choices == 2);
	CHECK(f->type == REDCAP_FIELD_YESNO && f->required);
	CHECK(strcmp(f->choices[0].code, "1") == 0 && strcmp(f->choices[0].label, "Yes") == 0);
	CHECK(strcmp(f->choices[1].code, "0") == 0 && strcmp(f->choices[1].label, "No") == 0);

	f = redcap_dict_field(d, "demographics_complete");
	REQUIRE(f && f->n_choices == 3);
	CHECK(f->implicit && f->type == REDCAP_FIELD_DROPDOWN && f->form == 0);
	CHECK(strcmp(f->choices[0].code, "0") == 0 && strcmp(f->choices[0].label, "Incomplete") == 0);
	CHECK(strcmp(f->choices[1].code, "1") == 0 && strcmp(f->choices[1].label, "Unverified") == 0);
	CHECK(strcmp(f->choices[2].code, "2") == 0 && strcmp(f->choices[2].label, "Complete") == 0);
	CHECK_STR(f->raw[REDCAP_COL_FORM_NAME], "demographics");

	f = redcap_dict_field(d, "heart_rate");
	REQUIRE(f);
	CHECK(f->vtype == REDCAP_V_INTEGER && f->force_minmax && strcmp(f->min, "20") == 0 &&
	      strcmp(f->max, "250") == 0 && f->form == 1);
	f = redcap_dict_field(d, "temp_c");
	CHECK(f && f->vtype == REDCAP_V_NUMBER_DP && f->decimals == 1 && !f->force_minmax);
	f = redcap_dict_field(d, "weight_kg");
	CHECK(f && f->vtype == REDCAP_V_NUMBER && f->force_minmax);  /* the tag is case-insensitive */
	f = redcap_dict_field(d, "bmi");
	CHECK(f && f->type == REDCAP_FIELD_CALC && f->n_choices == 0);
	f = redcap_dict_field(d, "pain");
	CHECK(f && f->type == REDCAP_FIELD_SLIDER && f->n_choices == 0 && f->vtype == REDCAP_V_NONE);
	f = redcap_dict_field(d, "smoker");
	CHECK(f && f->type == REDCAP_FIELD_DROPDOWN && f->n_choices == 3);
	f = redcap_dict_field(d, "alert_ok");
	CHECK(f && f->type == REDCAP_FIELD_TRUEFALSE && f->n_choices == 2 && strcmp(f->choices[0].label, "True") == 0);
	CHECK_INT(redcap_dict_field(d, "lab_time")->vtype, REDCAP_V_TIME);
	CHECK_INT(redcap_dict_field(d, "glucose")->vtype, REDCAP_V_NUMBER_COMMA);
	CHECK_INT(redcap_dict_field(d, "lab_pdf")->type, REDCAP_FIELD_FILE);
	CHECK_INT(redcap_dict_field(d, "lab_code")->vtype, REDCAP_V_OTHER);
	CHECK(redcap_dict_field(d, "lab_flag")->pseudo_calc);
	CHECK(!redcap_dict_field(d, "lab_code")->pseudo_calc);
	CHECK_INT(redcap_dict_field(d, "mrn")->vtype, REDCAP_V_MRN_10D);
	CHECK_STR(redcap_dict_field(d, "temp_c")->raw[REDCAP_COL_FIELD_LABEL], "Temperature (\xc2\xb0" "C)");
}

static void test_testdata(void)
{
	size_t clen, jlen;
	char *csv = read_testdata("dictionary.csv", &clen);
	char *json = read_testdata("metadata.json", &jlen);
	REQUIRE(csv && json);
	redcap_dict a = REDCAP_DICT_NULL, b = REDCAP_DICT_NULL;
	redcap_error err = { 0 };

	CHECK_INT(redcap_dict_parse_csv(&a, csv, clen, &err), 0);
	if (err.msg[0])
		fprintf(stderr, "  csv: %s\n", err.msg);
	check_model(&a, true);
	CHECK_INT(redcap_dict_parse_json(&b, json, jlen, &err), 0);
	if (err.msg[0])
		fprintf(stderr, "  json: %s\n", err.msg);
	check_model(&b, false);

	/* Both forms give the same model, column by column. */
	REQUIRE(a.n_fields == b.n_fields);
	for (size_t i = 0; i < a.n_fields; i++) {
		for (int c = 0; c < REDCAP_DD_COLUMNS; c++)
			CHECK_STR(a.fields[i].raw[c], b.fields[i].raw[c]);
		CHECK_INT(a.fields[i].type, b.fields[i].type);
		CHECK_INT(a.fields[i].vtype, b.fields[i].vtype);
		CHECK_INT(a.fields[i].n_choices, b.fields[i].n_choices);
	}

	/* Export columns. */
	json_t *cols = redcap_dict_export_columns(&a);
	char *s = json_dumps(cols, JSON_COMPACT);
	CHECK_STR(s, "[\"record_id\",\"first_name\",\"dob\",\"sex\",\"race___1\",\"race___2\",\"race___3\","
		     "\"race____99\",\"race___a_b\",\"email\",\"phone\",\"comments\",\"consent\",\"demographics_complete\","
		     "\"vitals_date\",\"heart_rate\",\"temp_c\",\"weight_kg\",\"bmi\",\"pain\",\"smoker\",\"alert_ok\","
		     "\"vitals_complete\",\"lab_time\",\"glucose\",\"lab_pdf\",\"lab_code\",\"lab_flag\",\"mrn\","
		     "\"labs_complete\"]");
	free(s);
	json_decref(cols);

	/* Reparsing resets; deinit is idempotent. */
	CHECK_INT(redcap_dict_parse_csv(&a, csv, clen, &err), 0);
	CHECK_INT(a.n_fields, 27);
	redcap_dict_deinit(&a);
	redcap_dict_deinit(&a);
	redcap_dict_deinit(&b);
	CHECK(a.fields == NULL && a.n_fields == 0 && a.longitudinal == -1);
	free(csv);
	free(json);
}

static void test_lookup(void)
{
	size_t clen;
	char *csv = read_testdata("dictionary.csv", &clen);
	REQUIRE(csv);
	redcap_dict d = REDCAP_DICT_NULL;
	REQUIRE(redcap_dict_parse_csv(&d, csv, clen, NULL) == 0);
	free(csv);

	static const struct {
		const char *column, *field, *code;
	} cases[] = {
		{ "record_id", "record_id", NULL },
		{ "race___1", "race", "1" },
		{ "race____99", "race", "-99" },
		{ "race___a_b", "race", "A.b" },
		{ "race", "race", NULL },              /* the bare checkbox name */
		{ "labs_complete", "labs_complete", NULL },
		{ "race___A.b", NULL, NULL },          /* codes must be written as REDCap formats them */
		{ "race___9", NULL, NULL },
		{ "sex___0", NULL, NULL },
		{ "nope", NULL, NULL },
		{ "", NULL, NULL },
		{ "RECORD_ID", NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const redcap_choice *ch = (const redcap_choice *)1;
		const redcap_field *f = redcap_dict_column(&d, cases[i].column, &ch);
		if (!cases[i].field) {
			CHECK(f == NULL && ch == NULL);
			continue;
		}
		REQUIRE(f);
		CHECK_STR(f->name, cases[i].field);
		if (cases[i].code)
			CHECK(ch && strcmp(ch->code, cases[i].code) == 0);
		else
			CHECK(ch == NULL);
	}
	CHECK(redcap_dict_field(&d, "race___1") == NULL);
	CHECK(redcap_dict_form(&d, "vitals") == &d.forms[1]);
	CHECK(redcap_dict_form(&d, "vital") == NULL);
	CHECK_INT(redcap_dict_form_index(&d, redcap_dict_form(&d, "labs")), 2);
	CHECK(redcap_dict_event(&d, "baseline_arm_1") == NULL);
	CHECK(redcap_dict_form_in_event(&d, NULL, 1));
	CHECK(!redcap_dict_form_repeats(&d, NULL, 1));

	static const struct {
		const char *field, *code, *want;
	} cols[] = {
		{ "race", "1", "race___1" }, { "race", "-99", "race____99" }, { "x", "A.b-C", "x___a_b_c" },
		{ "x", "", "x___" },
	};
	for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
		char *c = redcap_checkbox_column(cols[i].field, cols[i].code);
		CHECK_STR(c, cols[i].want);
		free(c);
	}
	CHECK_STR(redcap_field_type_name(REDCAP_FIELD_TRUEFALSE), "truefalse");
	CHECK(redcap_field_type_name((redcap_field_type)99) == NULL);
	CHECK_STR(redcap_dd_column_key(REDCAP_COL_ANNOTATION), "field_annotation");
	CHECK_STR(redcap_dd_column_header(REDCAP_COL_CHOICES), "Choices, Calculations, OR Slider Labels");
	CHECK(redcap_dd_column_key(18) == NULL && redcap_dd_column_header(-1) == NULL);
	redcap_dict_deinit(&d);
}

static void test_csv_variants(void)
{
	redcap_dict d = REDCAP_DICT_NULL;
	redcap_error err = { 0 };

	/* Semicolon delimiter, snake_case headers in another order, LF only,
	 * no BOM, a blank line, trailing empty header cells, fewer cells. */
	const char *semi = "form_name;field_name;field_type;select_choices_or_calculations;;\n"
			   "f1;record_id;text;\n"
			   "\n"
			   " ; ;\n"
			   "f1;color;dropdown;\"r, Red | g, Green; light\";;\n"
			   "f2;note;notes\n";
	CHECK_INT(parse_csv(&d, semi, &err), 0);
	REQUIRE(d.n_fields == 5);
	CHECK_STR(d.fields[1].name, "color");
	CHECK_STR(d.fields[1].choices[1].label, "Green; light");
	CHECK_STR(d.fields[2].name, "f1_complete");
	CHECK_STR(d.fields[3].name, "note");
	CHECK_INT(d.fields[3].line, 6);

	/* Tab delimiter, human headers in any case, CR-only line ends. */
	const char *tab = "variable / field name\tFORM NAME\tField Type\r"
			  "id\tform_a\ttext\r"
			  "score\tform_a\ttext\r";
	CHECK_INT(parse_csv(&d, tab, &err), 0);
	CHECK_INT(d.n_fields, 3);
	CHECK_INT(d.fields[1].line, 3);

	/* Choices on separate lines (legacy), padding around names. */
	const char *legacy = "field_name,form_name,field_type,select_choices_or_calculations,text_validation_type_or_show_slider_number\r\n"
			     "  rid , f ,text,,\r\n"
			     "mood,f, radio ,\"1, Good\n2, Bad\r\n3,Ugly\", \r\n";
	CHECK_INT(parse_csv(&d, legacy, &err), 0);
	REQUIRE(d.n_fields == 3);
	CHECK_STR(d.fields[0].name, "rid");
	CHECK_STR(d.fields[0].raw[REDCAP_COL_FORM_NAME], "f");
	CHECK_INT(d.fields[1].n_choices, 3);
	CHECK_STR(d.fields[1].choices[2].code, "3");
	CHECK_STR(d.fields[1].choices[2].label, "Ugly");
	/* Legacy type names. */
	const char *legacy_types = "field_name,form_name,field_type,text_validation_type_or_show_slider_number\n"
				   "a,f,text,int\nb,f,text,float\nc,f,text,date\nd,f,text,datetime\n"
				   "e,f,text,datetime_seconds\ng,f,select,\nh,f,text,number_4dp_comma_decimal\n";
	CHECK_INT(parse_csv(&d, legacy_types, &err), REDCAP_E_DICT);  /* select needs choices */
	CHECK_STR(err.msg, "line 7, column 1 (Choices, Calculations, OR Slider Labels): dropdown fields must have choices");
	const char *legacy_types2 = "field_name,form_name,field_type,text_validation_type_or_show_slider_number,select_choices_or_calculations\n"
				    "a,f,text,int,\nb,f,text,float,\nc,f,text,date,\nd,f,text,datetime,\n"
				    "e,f,text,datetime_seconds,\ng,f,select,,\"1, x\"\nh,f,text,number_4dp_comma_decimal,\n";
	CHECK_INT(parse_csv(&d, legacy_types2, &err), 0);
	CHECK_INT(d.fields[0].vtype, REDCAP_V_INTEGER);
	CHECK_INT(d.fields[1].vtype, REDCAP_V_NUMBER);
	CHECK_INT(d.fields[2].vtype, REDCAP_V_DATE_YMD);
	CHECK_INT(d.fields[3].vtype, REDCAP_V_DATETIME_YMD);
	CHECK_INT(d.fields[4].vtype, REDCAP_V_DATETIME_SECONDS_YMD);
	CHECK_INT(d.fields[5].type, REDCAP_FIELD_DROPDOWN);
	CHECK(d.fields[6].vtype == REDCAP_V_NUMBER_DP_COMMA && d.fields[6].decimals == 4);
	redcap_dict_deinit(&d);
}

struct err_case {
	const char *text;
	int rc;
	unsigned line, column;
	const char *msg;
};

#define HDR "field_name,form_name,field_type,select_choices_or_calculations,text_validation_type_or_show_slider_number\n"
#define RID "record_id,f1,text,,\n"

static void test_csv_errors(void)
{
	char long_name[400];
	snprintf(long_name, sizeof(long_name), HDR RID "%0101d,f1,text,,\n", 0);
	memset(long_name + strlen(HDR RID), 'a', 101);

	const struct err_case cases[] = {
		{ HDR RID "Age,f1,text,,\n", REDCAP_E_DICT, 3, 1,
		  "line 3, column 1 (Variable / Field Name): field names must consist of ONLY lower-case letters, numbers, and underscores" },
		{ HDR RID "1abc,f1,text,,\n", REDCAP_E_DICT, 3, 1,
		  "line 3, column 1 (Variable / Field Name): field names cannot begin with a number" },
		{ HDR RID "_a,f1,text,,\n", REDCAP_E_DICT, 3, 1,
		  "line 3, column 1 (Variable / Field Name): field names cannot begin with an underscore" },
		{ HDR RID "a___b,f1,text,,\n", REDCAP_E_DICT, 3, 1,
		  "line 3, column 1 (Variable / Field Name): field names cannot have a triple underscore (___)" },
		{ HDR RID ",f1,text,,\n", REDCAP_E_DICT, 3, 1,
		  "line 3, column 1 (Variable / Field Name): the field name is missing" },
		{ long_name, REDCAP_E_DICT, 3, 1,
		  "line 3, column 1 (Variable / Field Name): field names cannot be more than 100 characters in length" },
		{ HDR RID "x,f1,text,,\nx,f1,notes,,\n", REDCAP_E_DICT, 4, 1,
		  "line 4, column 1 (Variable / Field Name): field name 'x' is duplicated" },
		{ HDR RID "x,f2,text,,\ny,f1,text,,\n", REDCAP_E_DICT, 4, 3,
		  "line 4, column 3 (Form Name): form 'f1' comes back after another form started (form names must be sequential)" },
		{ HDR RID "x,F1,text,,\n", REDCAP_E_DICT, 3, 3,
		  "line 3, column 3 (Form Name): form names must consist of ONLY lower-case letters, numbers, and underscores" },
		{ HDR RID "x,,text,,\n", REDCAP_E_DICT, 3, 3, "line 3, column 3 (Form Name): the form name is missing" },
		{ HDR RID "x,f1,txt,,\n", REDCAP_E_DICT, 3, 6, "line 3, column 6 (Field Type): 'txt' is not a valid field type" },
		{ HDR RID "x,f1,radio,\"1, A\",integer\n", REDCAP_E_DICT, 3, 19,
		  "line 3, column 19 (Text Validation Type OR Show Slider Number): only text fields may have a validation type" },
		{ HDR RID "x,f1,radio,,\n", REDCAP_E_DICT, 3, 12,
		  "line 3, column 12 (Choices, Calculations, OR Slider Labels): radio fields must have choices" },
		{ HDR RID "x,f1,dropdown,\"1, A | 1, B\",\n", REDCAP_E_DICT, 3, 15,
		  "line 3, column 15 (Choices, Calculations, OR Slider Labels): choice code '1' is duplicated" },
		{ HDR RID "x,f1,radio,\"A | B\",\n", REDCAP_E_DICT, 3, 12,
		  "line 3, column 12 (Choices, Calculations, OR Slider Labels): choice 'A' has no code (write 'code, label')" },
		{ HDR RID "x,f1,radio,\" , A\",\n", REDCAP_E_DICT, 3, 12,
		  "line 3, column 12 (Choices, Calculations, OR Slider Labels): a choice has an empty code" },
		{ HDR RID "x,f1,radio,\"1, A | 2 b, B\",\n", REDCAP_E_DICT, 3, 12,
		  "line 3, column 12 (Choices, Calculations, OR Slider Labels): choice code '2 b' may only hold letters, digits, '_', '-' and '.'" },
		{ HDR RID "x,f1,radio,\"\xc3\xa9, A\",\n", REDCAP_E_DICT, 3, 12,
		  "line 3, column 12 (Choices, Calculations, OR Slider Labels): choice code '\xc3\xa9' may only hold letters, digits, '_', '-' and '.'" },
		{ HDR RID "x,f1,checkbox,\"a, A | A, B\",\n", REDCAP_E_DICT, 3, 15,
		  "line 3, column 15 (Choices, Calculations, OR Slider Labels): choice codes 'a' and 'A' give the same checkbox column" },
		{ HDR RID "f1_complete,f1,text,,\n", REDCAP_E_DICT, 3, 1,
		  "line 3, column 1 (Variable / Field Name): 'f1_complete' is the name of the implicit status field of form 'f1'" },
		{ HDR RID "f2_complete,f1,text,,\nz,f2,text,,\n", REDCAP_E_DICT, 3, 1,
		  "line 3, column 1 (Variable / Field Name): 'f2_complete' is the name of the implicit status field of form 'f2'" },
		/* CSV syntax. */
		{ HDR RID "x,f1,\"text,,\n", REDCAP_E_CSV, 3, 6, "line 3, column 6: quoted cell not closed" },
		{ HDR RID "x,f1,te\"xt,,\n", REDCAP_E_CSV, 3, 8, "line 3, column 8: quote inside an unquoted cell" },
		{ HDR RID "x,f1,\"text\"x,,\n", REDCAP_E_CSV, 3, 12, "line 3, column 12: unexpected character after a closing quote" },
		{ HDR "x,f1,text,\"a\nb\nc\"\"\",\ny,f1,\"\n", REDCAP_E_CSV, 5, 6, "line 5, column 6: quoted cell not closed" },
		/* Headers. */
		{ "field_name,form_name,field_type,colour\n" RID, REDCAP_E_DICT, 1, 33,
		  "line 1, column 33: unknown column header 'colour'" },
		{ "field_name,form_name\nx,f\n", REDCAP_E_DICT, 1, 1, "line 1: the header has no 'Field Type' column" },
		{ "field_name,Variable / Field Name,form_name,field_type\n", REDCAP_E_DICT, 1, 12,
		  "line 1, column 12: column 'Variable / Field Name' appears twice" },
		{ HDR RID "x,f1,text,,,extra\n", REDCAP_E_DICT, 3, 13, "line 3, column 13: more cells than the header has columns" },
		{ "", REDCAP_E_DICT, 0, 0, "the data dictionary is empty" },
		{ "\xef\xbb\xbf", REDCAP_E_DICT, 0, 0, "the data dictionary is empty" },
		{ HDR, REDCAP_E_DICT, 0, 0, "the data dictionary has no fields" },
		{ HDR "\n,,,,\n", REDCAP_E_DICT, 0, 0, "the data dictionary has no fields" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		redcap_dict d = REDCAP_DICT_NULL;
		redcap_error err = { 0 };
		int rc = parse_csv(&d, cases[i].text, &err);
		if (rc != cases[i].rc || err.line != cases[i].line || err.column != cases[i].column ||
		    strcmp(err.msg, cases[i].msg) != 0) {
			fprintf(stderr, "  case %zu: rc %d at %u:%u \"%s\"\n", i, rc, err.line, err.column, err.msg);
			harness_failures++;
		}
		CHECK(d.n_fields == 0 && d.fields == NULL && d.index == NULL);
		redcap_dict_deinit(&d);
	}
	/* Without an err pointer. */
	redcap_dict d = REDCAP_DICT_NULL;
	CHECK_INT(parse_csv(&d, HDR RID "Age,f1,text,,\n", NULL), REDCAP_E_DICT);
	CHECK_INT(redcap_dict_parse_csv(NULL, "", 0, NULL), -EINVAL);
}

static void test_json_errors(void)
{
	const struct err_case cases[] = {
		{ "{}", REDCAP_E_SHAPE, 0, 0, "metadata: not a JSON array" },
		{ "[1]", REDCAP_E_SHAPE, 0, 0, "metadata[0]: not an object" },
		{ "[{\"field_name\":\"a\",\"form_name\":\"f\"}]", REDCAP_E_SHAPE, 0, 0, "metadata[0]: field_type is missing" },
		{ "[{\"field_name\":\"a\",\"form_name\":\"f\",\"field_type\":\"text\",\"field_label\":[\"x\"]}]",
		  REDCAP_E_SHAPE, 0, 0, "metadata[0].field_label: not a string" },
		{ "[{\"field_name\":\"a\",\"form_name\":\"f\",\"field_type\":\"text\"},"
		  "{\"field_name\":\"a\",\"form_name\":\"f\",\"field_type\":\"text\"}]",
		  REDCAP_E_DICT, 0, 0, "metadata[1].field_name: field name 'a' is duplicated" },
		{ "[{\"field_name\":\"a\",\"form_name\":\"f\",\"field_type\":\"radio\",\"select_choices_or_calculations\":\"\"}]",
		  REDCAP_E_DICT, 0, 0, "metadata[0].select_choices_or_calculations: radio fields must have choices" },
		{ "[]", REDCAP_E_DICT, 0, 0, "the data dictionary has no fields" },
		{ "[{\"field_name\":\"a\",\n\"field_name\":\"b\"}]", REDCAP_E_JSON, 2, 12,
		  "metadata: invalid JSON at line 2, column 12: duplicate object key near '\"field_name\"'" },
		{ "[{\"field_name\":", REDCAP_E_JSON, 1, 15,
		  "metadata: invalid JSON at line 1, column 15: unexpected token near end of file" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		redcap_dict d = REDCAP_DICT_NULL;
		redcap_error err = { 0 };
		int rc = parse_json(&d, cases[i].text, &err);
		if (rc != cases[i].rc || err.line != cases[i].line || strcmp(err.msg, cases[i].msg) != 0) {
			fprintf(stderr, "  case %zu: rc %d at %u:%u \"%s\"\n", i, rc, err.line, err.column, err.msg);
			harness_failures++;
		}
		CHECK(d.n_fields == 0 && d.index == NULL);
	}
	/* Numbers and null are accepted as text; unknown keys ignored. */
	redcap_dict d = REDCAP_DICT_NULL;
	redcap_error err = { 0 };
	CHECK_INT(parse_json(&d,
			     "[{\"field_name\":\"a\",\"form_name\":\"f\",\"field_type\":\"text\",\"text_validation_type_or_show_slider_number\":\"integer\","
			     "\"text_validation_min\":0,\"text_validation_max\":1.5,\"field_note\":null,\"extra\":{}}]",
			     &err),
		  0);
	CHECK_STR(d.fields[0].min, "0");
	CHECK_STR(d.fields[0].max, "1.5");
	CHECK_STR(d.fields[0].raw[REDCAP_COL_FIELD_NOTE], "");
	redcap_dict_deinit(&d);
}

static void test_events(void)
{
	size_t clen;
	char *csv = read_testdata("dictionary.csv", &clen);
	REQUIRE(csv);
	redcap_dict d = REDCAP_DICT_NULL;
	redcap_error err = { 0 };
	REQUIRE(redcap_dict_parse_csv(&d, csv, clen, NULL) == 0);
	free(csv);

	const char *events = "[{\"event_name\":\"Baseline\",\"arm_num\":1,\"unique_event_name\":\"baseline_arm_1\","
			     "\"custom_event_label\":\"\",\"event_id\":41},"
			     "{\"event_name\":\"Visit 1\",\"arm_num\":\"1\",\"unique_event_name\":\"visit_1_arm_1\"},"
			     "{\"event_name\":\"Visit\",\"arm_num\":2,\"unique_event_name\":\"visit_arm_2\"}]";
	CHECK_INT(redcap_dict_load_events(&d, events, strlen(events), &err), 0);
	CHECK_INT(d.n_events, 3);
	CHECK_INT(d.longitudinal, 1);
	const redcap_event *ev = redcap_dict_event(&d, "visit_1_arm_1");
	REQUIRE(ev);
	CHECK_STR(ev->name, "Visit 1");
	CHECK_INT(ev->arm, 1);
	CHECK_INT(redcap_dict_event(&d, "visit_arm_2")->arm, 2);
	CHECK(redcap_dict_form_in_event(&d, ev, 2));  /* no mapping yet: anything goes */

	const char *mapping = "[{\"arm_num\":1,\"unique_event_name\":\"baseline_arm_1\",\"form\":\"demographics\"},"
			      "{\"arm_num\":1,\"unique_event_name\":\"baseline_arm_1\",\"form\":\"vitals\"},"
			      "{\"arm_num\":1,\"unique_event_name\":\"visit_1_arm_1\",\"form\":\"vitals\"},"
			      "{\"arm_num\":1,\"unique_event_name\":\"visit_1_arm_1\",\"form\":\"labs\"},"
			      "{\"arm_num\":3,\"unique_event_name\":\"late_arm_3\",\"form\":\"labs\"}]";
	CHECK_INT(redcap_dict_load_form_event_mapping(&d, mapping, strlen(mapping), &err), 0);
	CHECK(d.have_mapping);
	CHECK_INT(d.n_events, 4);
	const redcap_event *base = redcap_dict_event(&d, "baseline_arm_1");
	ev = redcap_dict_event(&d, "visit_1_arm_1");
	const redcap_event *late = redcap_dict_event(&d, "late_arm_3");
	REQUIRE(base && ev && late);
	CHECK(redcap_dict_form_in_event(&d, base, 0) && redcap_dict_form_in_event(&d, base, 1) &&
	      !redcap_dict_form_in_event(&d, base, 2));
	CHECK(!redcap_dict_form_in_event(&d, ev, 0) && redcap_dict_form_in_event(&d, ev, 2));
	CHECK(late->arm == 3 && strcmp(late->name, "") == 0 && late->n_forms == 1);
	CHECK(!redcap_dict_form_in_event(&d, redcap_dict_event(&d, "visit_arm_2"), 0));

	/* Failures leave the dictionary as it was. */
	const char *bad_form = "[{\"arm_num\":1,\"unique_event_name\":\"baseline_arm_1\",\"form\":\"nope\"}]";
	CHECK_INT(redcap_dict_load_form_event_mapping(&d, bad_form, strlen(bad_form), &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "formEventMapping[0]: form 'nope' is not in the data dictionary");
	CHECK(redcap_dict_form_in_event(&d, redcap_dict_event(&d, "baseline_arm_1"), 0));
	CHECK_INT(d.n_events, 4);
	const char *bad_shape = "[{\"arm_num\":\"x\",\"unique_event_name\":\"e\",\"form\":\"labs\"}]";
	CHECK_INT(redcap_dict_load_form_event_mapping(&d, bad_shape, strlen(bad_shape), &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "formEventMapping[0]: needs unique_event_name, form and arm_num");
	CHECK_INT(redcap_dict_load_form_event_mapping(&d, "{", 1, &err), REDCAP_E_JSON);
	CHECK_INT(redcap_dict_load_form_event_mapping(&d, "{}", 2, &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "formEventMapping: not a JSON array");

	const char *repeating = "[{\"event_name\":\"baseline_arm_1\",\"form_name\":\"vitals\",\"custom_form_label\":\"[vitals_date]\"},"
				"{\"event_name\":\"visit_1_arm_1\",\"form_name\":\"\",\"custom_form_label\":\"\"}]";
	CHECK_INT(redcap_dict_load_repeating(&d, repeating, strlen(repeating), &err), 0);
	CHECK_INT(d.repeating, 1);
	base = redcap_dict_event(&d, "baseline_arm_1");
	ev = redcap_dict_event(&d, "visit_1_arm_1");
	CHECK(redcap_dict_form_repeats(&d, base, 1) && !redcap_dict_form_repeats(&d, base, 0));
	CHECK(ev->repeat_whole && !base->repeat_whole && !redcap_dict_form_repeats(&d, ev, 1));
	const char *bad_event = "[{\"event_name\":\"nope_arm_1\",\"form_name\":\"vitals\"}]";
	CHECK_INT(redcap_dict_load_repeating(&d, bad_event, strlen(bad_event), &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "repeatingFormsEvents[0]: event 'nope_arm_1' is not a known event");
	CHECK(redcap_dict_form_repeats(&d, redcap_dict_event(&d, "baseline_arm_1"), 1));
	CHECK_INT(redcap_dict_load_repeating(&d, "[]", 2, &err), 0);
	CHECK_INT(d.repeating, 0);
	CHECK(!redcap_dict_form_repeats(&d, redcap_dict_event(&d, "baseline_arm_1"), 1));

	/* Event labels, as REDCap names events in messages. */
	char *label = redcap_event_label(&d, redcap_dict_event(&d, "visit_1_arm_1"));
	CHECK_STR(label, "Visit 1 (Arm 1: Arm 1)");  /* arms not loaded: REDCap's default name */
	free(label);
	label = redcap_event_label(&d, redcap_dict_event(&d, "late_arm_3"));
	CHECK_STR(label, "late_arm_3 (Arm 3: Arm 3)");  /* only known from the mapping */
	free(label);
	const char *arms = "[{\"arm_num\":1,\"name\":\"Screening arm\"},{\"arm_num\":\"3\",\"name\":\"Late\"}]";
	CHECK_INT(redcap_dict_load_arms(&d, arms, strlen(arms), &err), 0);
	CHECK_INT(d.n_arms, 2);
	label = redcap_event_label(&d, redcap_dict_event(&d, "visit_1_arm_1"));
	CHECK_STR(label, "Visit 1 (Arm 1: Screening arm)");
	free(label);
	label = redcap_event_label(&d, redcap_dict_event(&d, "late_arm_3"));
	CHECK_STR(label, "late_arm_3 (Arm 3: Late)");
	free(label);
	const char *bad_arms = "[{\"arm_num\":0,\"name\":\"x\"}]";
	CHECK_INT(redcap_dict_load_arms(&d, bad_arms, strlen(bad_arms), &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "arm[0]: needs arm_num and name");
	CHECK_INT(d.n_arms, 2);

	/* Reloading events drops the mapping. */
	CHECK_INT(redcap_dict_load_events(&d, events, strlen(events), &err), 0);
	CHECK(!d.have_mapping && d.n_events == 3);
	const char *dup = "[{\"event_name\":\"A\",\"arm_num\":1,\"unique_event_name\":\"a_arm_1\"},"
			  "{\"event_name\":\"B\",\"arm_num\":1,\"unique_event_name\":\"a_arm_1\"}]";
	CHECK_INT(redcap_dict_load_events(&d, dup, strlen(dup), &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "event[1]: unique_event_name 'a_arm_1' appears twice");
	CHECK_INT(d.n_events, 3);

	/* Export columns of a longitudinal project with repeating forms. */
	redcap_project p = REDCAP_PROJECT_NULL;
	p.repeating = 1;
	redcap_dict_set_project(&d, &p);
	json_t *cols = redcap_dict_export_columns(&d);
	CHECK_STR(json_string_value(json_array_get(cols, 1)), "redcap_event_name");
	CHECK_STR(json_string_value(json_array_get(cols, 2)), "redcap_repeat_instrument");
	CHECK_STR(json_string_value(json_array_get(cols, 3)), "redcap_repeat_instance");
	CHECK_STR(json_string_value(json_array_get(cols, 4)), "first_name");
	json_decref(cols);
	redcap_dict_deinit(&d);

	/* Classic project: repeating forms without an event name. */
	csv = read_testdata("dictionary.csv", &clen);
	REQUIRE(redcap_dict_parse_csv(&d, csv, clen, NULL) == 0);
	free(csv);
	CHECK_INT(redcap_dict_load_events(&d, "[]", 2, &err), 0);  /* loads, but... */
	d.longitudinal = 0;                                        /* ...the project says classic */
	const char *classic = "[{\"event_name\":\"\",\"form_name\":\"vitals\",\"custom_form_label\":\"\"}]";
	CHECK_INT(redcap_dict_load_repeating(&d, classic, strlen(classic), &err), 0);
	CHECK(redcap_dict_form_repeats(&d, NULL, 1) && !redcap_dict_form_repeats(&d, NULL, 0));
	const char *classic_event = "[{\"event_name\":\"\",\"form_name\":\"\"}]";
	CHECK_INT(redcap_dict_load_repeating(&d, classic_event, strlen(classic_event), &err), REDCAP_E_SHAPE);
	redcap_dict_deinit(&d);

	/* Extras need a dictionary. */
	CHECK_INT(redcap_dict_load_events(&d, "[]", 2, &err), -EINVAL);
}

/* The example study shipped in conf/example-project parses into the model
 * issue #3 describes (the emulator builds its project from the same file). */
static void test_example_project(void)
{
	size_t n;
	char *buf = harness_read_source_file("conf/example-project/dictionary.csv", &n);
	REQUIRE(buf);
	redcap_dict d = REDCAP_DICT_NULL;
	redcap_error err = { 0 };
	CHECK_INT(redcap_dict_parse_csv(&d, buf, n, &err), 0);
	if (err.msg[0])
		fprintf(stderr, "  %s\n", err.msg);
	CHECK_STR(redcap_dict_record_id(&d)->name, "record_id");
	static const struct {
		const char *name;
		redcap_field_type type;
		redcap_vtype vtype;
	} want[] = {
		{ "dob", REDCAP_FIELD_TEXT, REDCAP_V_DATE_YMD },
		{ "enroll_date", REDCAP_FIELD_TEXT, REDCAP_V_DATE_YMD },
		{ "hr_baseline", REDCAP_FIELD_TEXT, REDCAP_V_INTEGER },
		{ "creat_max_48h", REDCAP_FIELD_TEXT, REDCAP_V_NUMBER },
		{ "vs_datetime", REDCAP_FIELD_TEXT, REDCAP_V_DATETIME_SECONDS_YMD },
		{ "vs_value", REDCAP_FIELD_TEXT, REDCAP_V_NUMBER },
		{ "lab_datetime", REDCAP_FIELD_TEXT, REDCAP_V_DATETIME_SECONDS_YMD },
		{ "lab_value", REDCAP_FIELD_TEXT, REDCAP_V_NUMBER },
		{ "cond_onset", REDCAP_FIELD_TEXT, REDCAP_V_DATE_YMD },
		{ "med_authored", REDCAP_FIELD_TEXT, REDCAP_V_DATE_YMD },
		{ "allergy_criticality", REDCAP_FIELD_TEXT, REDCAP_V_NONE },
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const redcap_field *fl = redcap_dict_field(&d, want[i].name);
		if (!fl) {
			fprintf(stderr, "  missing field %s\n", want[i].name);
			harness_failures++;
			continue;
		}
		CHECK_INT(fl->type, want[i].type);
		CHECK_INT(fl->vtype, want[i].vtype);
	}
	const redcap_field *sex = redcap_dict_field(&d, "sex");
	REQUIRE(sex);
	CHECK_INT(sex->type, REDCAP_FIELD_RADIO);
	CHECK_INT(sex->n_choices, 3);
	free(buf);
	redcap_dict_deinit(&d);
}

static const struct harness_test tests[] = {
	HARNESS_TEST(test_testdata),   HARNESS_TEST(test_lookup), HARNESS_TEST(test_csv_variants),
	HARNESS_TEST(test_csv_errors), HARNESS_TEST(test_json_errors), HARNESS_TEST(test_events), HARNESS_TEST(test_example_project),
};

int main(int argc, char **argv)
{
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
