/* Not written yet: fails until it is. */
int main(void)
{
	return 1;
}
